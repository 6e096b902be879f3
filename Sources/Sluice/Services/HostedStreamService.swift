public import GRPCCore
public import Logging
public import SluiceProtos
internal import SwiftProtobuf

/// `proto.StreamService` with the seed tutorial's behaviour.
///
/// - `List` answers `listCount` responses (7 by default) counting up from the request's value.
/// - `Record` reads until the client half-closes, then answers value 1.
/// - `Route` answers every request with a running count from 0.
///
/// `pace` is the seed's pause between `List` sends and after each `Record` receive.
public struct HostedStreamService: Proto_StreamService.SimpleServiceProtocol {
  private let pace: Duration
  private let listCount: Int
  private let logger: Logger

  /// Creates the service.
  /// - Parameters:
  ///   - pace: The pause between `List` sends and after each `Record` receive; zero for none.
  ///   - listCount: How many responses `List` sends.
  ///   - logger: Receives per-message detail at debug level.
  public init(pace: Duration, listCount: Int, logger: Logger) {
    self.pace = pace
    self.listCount = listCount
    self.logger = logger
  }

  public func list(
    request: Proto_StreamRequest,
    response: RPCWriter<Proto_StreamResponse>,
    context: ServerContext
  ) async throws {
    try await endingWithUnavailableOnShutdown {
      for n in 0..<self.listCount {
        // With no pace nothing else here notices cancellation: writes may complete at once.
        try Task.checkCancellation()
        if n > 0 { try await self.pause() }
        try await response.write(
          .with {
            $0.pt.name = request.pt.name
            $0.pt.value = request.pt.value &+ Int32(truncatingIfNeeded: n)
          }
        )
      }
    }
  }

  public func record(
    request: RPCAsyncSequence<Proto_StreamRequest, any Error>,
    context: ServerContext
  ) async throws -> Proto_StreamResponse {
    try await endingWithUnavailableOnShutdown {
      for try await message in request {
        self.logger.debug(
          "Record received",
          metadata: ["sluice.pt.name": "\(message.pt.name)", "sluice.pt.value": "\(message.pt.value)"]
        )
        try await self.pause()
      }
    }
    return .with {
      $0.pt.name = "gRPC Stream Server: Record"
      $0.pt.value = 1
    }
  }

  public func route(
    request: RPCAsyncSequence<Proto_StreamRequest, any Error>,
    response: RPCWriter<Proto_StreamResponse>,
    context: ServerContext
  ) async throws {
    try await endingWithUnavailableOnShutdown {
      var n: Int32 = 0
      for try await _ in request {
        try await response.write(
          .with {
            $0.pt.name = "gRPC Stream Server: Route"
            $0.pt.value = n
          }
        )
        n &+= 1
      }
    }
  }

  private func pause() async throws {
    if self.pace > .zero {
      try await Task.sleep(for: self.pace)
    }
  }
}

public import GRPCCore
public import SluiceProtos
internal import SwiftProtobuf

/// `DataService` from the seed: every `StreamRequest{data}` is answered, as it arrives, with
/// `StreamResponse{result: "processed: <data>"}`.
public struct HostedDataService: DataService.SimpleServiceProtocol {
  /// Creates the service.
  public init() {}

  public func bidirectionalStream(
    request: RPCAsyncSequence<StreamRequest, any Error>,
    response: RPCWriter<StreamResponse>,
    context: ServerContext
  ) async throws {
    try await endingWithUnavailableOnShutdown {
      for try await message in request {
        try await response.write(.with { $0.result = "processed: \(message.data)" })
      }
    }
  }
}

public import GRPCCore
public import Logging
internal import Synchronization

/// A server interceptor that counts the RPCs in flight, by method, and logs how each one ended.
///
/// An RPC counts as in flight from the moment it is routed until its handler has returned or
/// thrown, so a cancelled stream leaves the count as soon as its handler has stopped.
public final class RPCMonitor: ServerInterceptor {
  private let active: Mutex<[String: Int]>
  private let logger: Logger

  /// Creates a monitor.
  /// - Parameter logger: Receives one debug line per finished RPC.
  public init(logger: Logger) {
    self.active = Mutex([:])
    self.logger = logger
  }

  /// The number of RPCs in flight, for all methods or for one (`proto.StreamService/List`).
  public func activeRPCs(method: String? = nil) -> Int {
    self.active.withLock { counts in
      if let method { counts[method, default: 0] } else { counts.values.reduce(0, +) }
    }
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let method = context.descriptor.fullyQualifiedMethod
    let start = ContinuousClock.now
    self.active.withLock { $0[method, default: 0] += 1 }

    let response: StreamingServerResponse<Output>
    do {
      response = try await next(request, context)
    } catch {
      self.finished(method, start: start, error: error)
      throw error
    }

    if case .failure(let error) = response.accepted {
      self.finished(method, start: start, error: error)
      return response
    }
    return response.wrappingProducer { writer, producer in
      do {
        let trailers = try await producer(writer)
        self.finished(method, start: start, error: nil)
        return trailers
      } catch {
        self.finished(method, start: start, error: error)
        throw error
      }
    }
  }

  private func finished(_ method: String, start: ContinuousClock.Instant, error: (any Error)?) {
    self.active.withLock { counts in
      counts[method, default: 1] -= 1
      if counts[method] == 0 { counts[method] = nil }
    }
    let code: String
    switch error {
    case nil: code = "ok"
    case let error as RPCError: code = "\(error.code)"
    case is CancellationError: code = "cancelled"
    case let error?: code = "unknown (\(type(of: error)))"
    }
    self.logger.debug(
      "RPC finished",
      metadata: [
        "sluice.rpc.method": "\(method)",
        "sluice.rpc.code": "\(code)",
        "sluice.rpc.duration": "\(ContinuousClock.now - start)",
      ]
    )
  }
}

public import GRPCCore
internal import Synchronization

/// Refuses new RPCs with `RESOURCE_EXHAUSTED` while `limit` are already running, on every
/// transport (it sits on both servers); the running ones are unaffected.
public final class RPCLimiter: ServerInterceptor {
  private let limit: Int
  private let running = Atomic<Int>(0)

  public init(limit: Int) {
    self.limit = limit
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard self.running.add(1, ordering: .relaxed).newValue <= self.limit else {
      self.running.subtract(1, ordering: .relaxed)
      throw RPCError(
        code: .resourceExhausted,
        message: "the gateway is running its limit of \(self.limit) RPCs (--max-concurrent-rpcs); retry later"
      )
    }
    return try await .observingEnd(of: { try await next(request, context) }) { _ in
      self.running.subtract(1, ordering: .relaxed)
    }
  }
}

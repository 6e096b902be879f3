public import GRPCCore
internal import Synchronization

/// Refuses new RPCs with `RESOURCE_EXHAUSTED` while `limit` are already running, on every
/// transport (it sits on both servers); the running ones are unaffected.
public final class RPCLimiter: ServerInterceptor {
  /// How many RPCs may run at once.
  let limit: Int
  private let running = Atomic<Int>(0)

  public init(limit: Int) {
    self.limit = limit
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard self.acquire() else { throw GRPCErrors.tooManyRPCs(limit: self.limit) }
    return try await .observingEnd(of: { try await next(request, context) }) { _ in self.release() }
  }

  /// Takes a slot for one RPC; false (and nothing taken) when all `limit` are in use.
  func acquire() -> Bool {
    guard self.running.add(1, ordering: .relaxed).newValue <= self.limit else {
      self.running.subtract(1, ordering: .relaxed)
      return false
    }
    return true
  }

  /// Gives back a slot taken by `acquire()`.
  func release() {
    self.running.subtract(1, ordering: .relaxed)
  }
}

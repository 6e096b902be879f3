internal import GRPCCore
internal import ServiceLifecycle

/// Runs a streaming handler's body; if the gateway begins a graceful shutdown first, the body is
/// cancelled and the RPC ends with `UNAVAILABLE`, so the client sees a status rather than a reset.
///
/// Unary handlers don't need this: they finish within the drain timeout on their own.
func endingWithUnavailableOnShutdown<Result: Sendable>(
  _ body: @escaping @Sendable () async throws -> Result
) async throws -> Result {
  do {
    return try await cancelWhenGracefulShutdown(body)
  } catch  where Task.isShuttingDownGracefully {
    throw GRPCErrors.shuttingDown
  }
}

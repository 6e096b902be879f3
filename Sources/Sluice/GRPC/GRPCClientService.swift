internal import GRPCCore
internal import ServiceLifecycle

/// Runs a `GRPCClient`'s connections as a ServiceLifecycle `Service`; a graceful shutdown lets
/// the calls in flight finish and refuses new ones.
struct GRPCClientService<Transport: ClientTransport>: Service {
  let client: GRPCClient<Transport>

  func run() async throws {
    do {
      try await withGracefulShutdownHandler {
        try await self.client.runConnections()
      } onGracefulShutdown: {
        self.client.beginGracefulShutdown()
      }
    } catch let error as RuntimeError where error.code == .clientIsStopped && Task.isShuttingDownGracefully {
      // The shutdown came before the connections ran (a gateway stopped right after starting).
    }
  }
}

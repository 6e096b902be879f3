public import GRPCCore
internal import ServiceLifecycle

/// Runs a `GRPCClient`'s connections as a ServiceLifecycle `Service`; a graceful shutdown lets
/// the calls in flight finish and refuses new ones.
struct GRPCClientService<Transport: ClientTransport>: Service {
  let client: GRPCClient<Transport>

  func run() async throws {
    try await withGracefulShutdownHandler {
      try await self.client.runConnections()
    } onGracefulShutdown: {
      self.client.beginGracefulShutdown()
    }
  }
}

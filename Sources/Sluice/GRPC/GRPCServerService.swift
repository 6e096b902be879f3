internal import GRPCCore
internal import ServiceLifecycle

/// Runs a `GRPCServer` as a ServiceLifecycle `Service`.
///
/// `GRPCServer` is not a `Service` itself: without this wrapper a SIGTERM would cancel it
/// outright. Here a graceful shutdown of the service group calls `beginGracefulShutdown()`, so the
/// server sends GOAWAY, refuses new streams and returns from `serve()` once open RPCs have ended.
struct GRPCServerService<Transport: ServerTransport>: Service {
  let server: GRPCServer<Transport>

  func run() async throws {
    try await withGracefulShutdownHandler {
      try await self.server.serve()
    } onGracefulShutdown: {
      self.server.beginGracefulShutdown()
    }
  }
}

import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import Sluice

/// Test configuration: loopback, ports picked by the OS, no pace.
func testConfiguration(listCount: Int = 7) -> GatewayConfiguration {
  GatewayConfiguration(
    grpc: .init(port: 0),
    http: .init(port: 0),
    services: .init(pace: .zero, listCount: listCount)
  )
}

/// Runs a real gateway on loopback, hands `body` a grpc-swift client connected to its HTTP/2
/// port, then shuts the gateway down gracefully and waits for `run()` to return.
func withGateway<Result: Sendable>(
  _ configuration: GatewayConfiguration = testConfiguration(),
  _ body: @Sendable (Gateway, GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
) async throws -> Result {
  let gateway = try Gateway(
    configuration: configuration,
    logger: Logger(label: "sluice.tests", factory: { _ in SwiftLogNoOpLogHandler() })
  )
  return try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await gateway.run() }
    let port = try await gateway.grpcPort()
    let result = try await withGRPCClient(
      transport: .http2NIOPosix(
        target: .ipv4(address: "127.0.0.1", port: port),
        transportSecurity: .plaintext
      )
    ) { client in
      try await body(gateway, client)
    }
    await gateway.beginGracefulShutdown()
    try await group.waitForAll()
    return result
  }
}

/// Polls `condition` every 10 ms for at most `limit`; returns whether it became true. A bound on
/// waiting for an event, not a timing assertion.
func eventually(within limit: Duration = .seconds(10), _ condition: () -> Bool) async throws -> Bool {
  let deadline = ContinuousClock.now + limit
  while ContinuousClock.now < deadline {
    if condition() { return true }
    try await Task.sleep(for: .milliseconds(10))
  }
  return condition()
}

import GRPCCore
import Sluice
import SluiceGRPCStubs
import SluiceProtos
import SwiftProtobuf
import Testing

@Suite("Gateway lifecycle")
struct GatewayTests {
  @Test("Graceful shutdown ends an open Route with UNAVAILABLE and run() returns")
  func gracefulShutdownEndsOpenStreams() async throws {
    try await withGateway { gateway, client in
      let error = await #expect(throws: RPCError.self) {
        try await Proto_StreamService.Client(wrapping: client).route { writer in
          try await writer.write(.with { $0.pt.value = 1 })
          // Keep the stream open: the client never half-closes on its own.
          try await Task.sleep(for: .seconds(60))
        } onResponse: { response in
          for try await message in response.messages where message.pt.value == 0 {
            await gateway.beginGracefulShutdown()
          }
        }
      }
      #expect(error?.code == .unavailable)
      #expect(gateway.monitor.activeRPCs() == 0)
    }
  }

  @Test("Port 0 binds free ports, and the gateway serves on them")
  func portZero() async throws {
    try await withGateway { gateway, client in
      let (grpcPort, httpPort) = (try await gateway.grpcPort(), try await gateway.httpPort())
      #expect(grpcPort > 0 && grpcPort != 8888)
      #expect(httpPort > 0 && httpPort != 8080 && httpPort != grpcPort)
      // The harness's client is connected to `grpcPort`.
      let reply = try await Hello_UserService.Client(wrapping: client).sayHi(.with { $0.name = "port" })
      #expect(reply.result.hasPrefix("hi port---"))
    }
  }
}

import GRPCCore
import Sluice
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

  @Test("Port 0 binds a free port")
  func portZero() async throws {
    try await withGateway { gateway, _ in
      let port = try await gateway.grpcPort()
      #expect(port > 0 && port != 8888)
    }
  }
}

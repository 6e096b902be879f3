import AsyncHTTPClient
import Foundation
import GRPCCore
import NIOCore
import NIOHTTP1
import Sluice
import SluiceGRPCStubs
import SluiceProtos
import SwiftProtobuf
import Testing

@Suite("Bearer tokens on every transport; metrics")
struct SecurityAndMetricsTests {
  @Test("--require-bearer refuses calls without a listed token on gRPC, HTTP JSON and WebSocket")
  func bearerTokens() async throws {
    var configuration = testConfiguration()
    configuration.auth.bearerTokens = ["t0k", "second"]
    try await withGateway(configuration) { gateway, client in
      let users = Hello_UserService.Client(wrapping: client)
      let request = Hello_Request.with { $0.name = "ada" }

      // Native gRPC.
      await #expect(throws: RPCError.self) { try await users.sayHi(request) }
      do {
        _ = try await users.sayHi(request, metadata: ["authorization": "Bearer wrong"])
        Issue.record("a wrong token was accepted")
      } catch let error as RPCError {
        #expect(error.code == .unauthenticated)
      }
      let allowed = try await users.sayHi(request, metadata: ["authorization": "Bearer second"])
      #expect(allowed.result.hasPrefix("hi ada---"))

      // HTTP JSON.
      let port = try await gateway.httpPort()
      let refused = try await send(httpRequest(port: port, path: "/hello.UserService/SayHi", body: #"{"name":"ada"}"#))
      #expect(refused.status == .unauthorized)
      #expect(refused.headers["WWW-Authenticate"] == ["Bearer"])
      #expect(refused.json?["code"] as? Int == 16)
      let accepted = try await send(
        httpRequest(
          port: port,
          path: "/hello.UserService/SayHi",
          headers: [("Authorization", "Bearer t0k")],
          body: #"{"name":"ada"}"#
        )
      )
      #expect(accepted.status == .ok)

      // WebSocket: no token, then the browser's way (a bearer.<base64url> subprotocol).
      let noToken = try await session(port: port, path: "/hello.UserService/SayHi", frames: [#"{"name":"ada"}"#])
      #expect(noToken.end?["code"] as? Int == 16)
      #expect(noToken.closeCode == 4016)
      let subprotocol = "bearer." + Data("t0k".utf8).base64EncodedString().replacingOccurrences(of: "=", with: "")
      let withToken = try await session(
        port: port,
        path: "/hello.UserService/SayHi",
        headers: [("Sec-WebSocket-Protocol", subprotocol)],
        frames: [#"{"name":"ada"}"#]
      )
      #expect(withToken.end?["code"] as? Int == 0)
      // The refused calls never reached a service but are counted, by transport and code only
      // (a caller without a token adds no series of its own).
      // /metrics asks for a token too.
      #expect(try await send(httpRequest(port: port, path: "/metrics", method: .GET)).status == .unauthorized)
      let metrics = try await send(
        httpRequest(port: port, path: "/metrics", method: .GET, headers: [("Authorization", "Bearer t0k")])
      ).body
      #expect(
        metrics.contains(
          #"sluice_rpcs_refused_total{transport="grpc",code="unauthenticated"} 2"#))
      let perMethod = #"sluice_rpcs_total{method="hello.UserService/SayHi",transport="grpc",code="unauthenticated"}"#
      #expect(!metrics.contains(perMethod))
      #expect(
        metrics.contains(#"sluice_rpcs_total{method="hello.UserService/SayHi",transport="websocket",code="ok"} 1"#))
    }
  }

  @Test("GET /metrics: active RPCs while a stream runs, then totals, messages and bytes by transport")
  func metrics() async throws {
    var configuration = testConfiguration()
    configuration.services.pace = .seconds(600)  // the List stays open after its first message
    try await withGateway(configuration) { gateway, _ in
      let port = try await gateway.httpPort()
      func scrape() async throws -> String {
        try await send(httpRequest(port: port, path: "/metrics", method: .GET)).body
      }

      let list = Task {
        try await session(port: port, path: "/proto.StreamService/List", frames: [#"{"pt":{"value":1}}"#])
      }
      let active = #"sluice_rpcs_active{method="proto.StreamService/List",transport="websocket"} 1.0"#
      var seen = false
      for _ in 0..<500 where !seen {
        seen = try await scrape().contains(active)
        if !seen { try await Task.sleep(for: .milliseconds(10)) }
      }
      #expect(seen, "the running List should show in sluice_rpcs_active")
      #expect(try await scrape().contains(#"sluice_connections_open{transport="websocket"} 1.0"#))
      list.cancel()
      _ = try? await list.value

      _ = try await send(httpRequest(port: port, path: "/hello.UserService/SayHi", body: #"{"name":"ada"}"#))
      let ended = try await eventually { gateway.monitor.activeRPCs() == 0 }
      #expect(ended)
      let text = try await scrape()
      #expect(text.contains(#"sluice_rpcs_active{method="proto.StreamService/List",transport="websocket"} 0.0"#))
      #expect(text.contains(#"sluice_rpcs_total{method="hello.UserService/SayHi",transport="http",code="ok"} 1"#))
      #expect(text.contains(#"sluice_messages_total{transport="http",direction="out"} 1"#))
      #expect(text.contains(#"sluice_bytes_total{transport="http",direction="in"} 14"#))
      #expect(text.contains("# TYPE sluice_rpcs_total counter"))
    }
  }
}

import Foundation
import GRPCCore
import NIOCore
import NIOWebSocket
import Sluice
import SluiceTestSupport
import Testing

/// What the client saw: the text frames and the Close code.
struct Transcript: Sendable {
  var texts: [String]
  var closeCode: Int?

  /// The frames parsed as JSON objects.
  var frames: [[String: Any]] {
    self.texts.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
  }

  var end: [String: Any]? { self.frames.last?["$end"] as? [String: Any] }
}

/// Runs one session: sends `frames`, then reads until the server's Close (which it answers).
func session(port: Int, path: String, headers: [(String, String)] = [], frames: [String]) async throws -> Transcript {
  let channel = try await WebSocketTestClient.connect(port: port, path: path, headers: headers)
  return try await channel.executeThenClose { inbound, outbound in
    for frame in frames { try await outbound.write(WebSocketTestClient.text(frame)) }
    var transcript = Transcript(texts: [])
    for try await frame in inbound {
      switch frame.opcode {
      case .text:
        transcript.texts.append(String(buffer: frame.unmaskedData))
      case .connectionClose:
        var data = frame.unmaskedData
        transcript.closeCode = data.readInteger(as: UInt16.self).map(Int.init)
        // Answer the Close; the server may already have closed TCP if this came late.
        try? await outbound.write(WebSocketTestClient.close())
        return transcript
      default:
        continue
      }
    }
    return transcript
  }
}

@Suite("WebSocket/JSON sessions (Swift client)")
struct WebSocketSessionTests {
  @Test("List over WebSocket: seven messages, $end code 0, Close 1000")
  func list() async throws {
    let transcript = try await withGateway { gateway, _ in
      try await session(
        port: try await gateway.httpPort(),
        path: "/proto.StreamService/List",
        frames: [#"{"pt":{"name":"a","value":10}}"#]
      )
    }
    let values = transcript.frames.dropLast().compactMap { ($0["pt"] as? [String: Any])?["value"] as? Int }
    #expect(values == Array(10...16))
    #expect(transcript.end?["code"] as? Int == 0)
    #expect(transcript.closeCode == 1000)
  }

  @Test("Handshake headers and $metadata reach the service as metadata")
  func metadata() async throws {
    var configuration = testConfiguration()
    configuration.calls.echoMetadata = true
    let transcript = try await withGateway(configuration) { gateway, _ in
      try await session(
        port: try await gateway.httpPort(),
        path: "/hello.UserService/SayHi",
        headers: [("Authorization", "Bearer t0k"), ("grpc-metadata-trace-id", "abc")],
        frames: [#"{"$metadata":{"tenant":["acme","beta"]}}"#, #"{"name":"m"}"#]
      )
    }
    let headers = try #require(transcript.frames.first?["$headers"] as? [String: [String]])
    // Credentials are never echoed; that Authorization reaches the service is the bearer tests' part.
    #expect(headers["echo-authorization"] == nil)
    #expect(headers["echo-trace-id"] == ["abc"])
    #expect(headers["echo-tenant"] == ["acme", "beta"])
    #expect(headers.keys.allSatisfy { !$0.contains("sluice-rpc-id") }, "the bridge's own tag leaked to the service")
    #expect(transcript.end?["code"] as? Int == 0)
  }

  @Test(
    "Bad input ends the session with a clear $end and the matching Close code",
    arguments: [
      ("/proto.StreamService/Route", "{not json", 3, "malformed JSON"),
      ("/proto.StreamService/Route", #"{"pt":{"value":"abc"}}"#, 3, "pt.value"),
      ("/proto.StreamService/Nope", "{}", 12, "unknown method"),
    ]
  )
  func badInput(path: String, frame: String, code: Int, needle: String) async throws {
    let transcript = try await withGateway { gateway, _ in
      try await session(port: try await gateway.httpPort(), path: path, frames: [frame])
    }
    #expect(transcript.end?["code"] as? Int == code)
    #expect((transcript.end?["message"] as? String)?.contains(needle) == true, "\(transcript.frames)")
    #expect(transcript.closeCode == 4000 + code)
  }

  @Test("A client that vanishes mid-List cancels the RPC on the service")
  func vanishedClient() async throws {
    try await withGateway(testConfiguration(listCount: 100_000_000)) { gateway, _ in
      let channel = try await WebSocketTestClient.connect(
        port: try await gateway.httpPort(),
        path: "/proto.StreamService/List"
      )
      try await channel.executeThenClose { inbound, outbound in
        try await outbound.write(WebSocketTestClient.text(#"{"pt":{"value":0}}"#))
        var received = 0
        for try await frame in inbound where frame.opcode == .text {
          received += 1
          if received == 5 { break }
        }
        #expect(gateway.monitor.activeRPCs(method: "proto.StreamService/List") == 1)
      }
      // executeThenClose closed the TCP connection without a Close frame.
      let stopped = try await eventually { gateway.monitor.activeRPCs() == 0 }
      #expect(stopped, "the List kept running after its WebSocket client vanished")
    }
  }
}

// BridgeBenchmark: messages per second through the WebSocket/JSON bridge and through native
// gRPC, on the same gateway in the same run.
//
//   swift run -c release BridgeBenchmark [messages] [runs]
//
// The gateway runs in this process (pace 0, List count = messages) and so do the clients, so both
// paths share the same 2 cores; the figures are for comparing the two paths, not absolute limits.

import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import NIOCore
import NIOWebSocket
import Sluice
import SluiceGRPCStubs
import SluiceProtos
import SluiceTestSupport
import SwiftProtobuf

let arguments = CommandLine.arguments.dropFirst().compactMap { Int($0) }
let messages = arguments.first ?? 100_000
let runs = arguments.dropFirst().first ?? 3

let gateway = try Gateway(
  configuration: GatewayConfiguration(
    grpc: .init(port: 0),
    http: .init(port: 0),
    webSocket: .init(pingInterval: nil),
    services: .init(pace: .zero, listCount: messages)
  ),
  logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
)

/// Times `body`, which must move `messages` messages, and returns messages per second.
func measure(_ body: @Sendable () async throws -> Int) async throws -> Double {
  let start = ContinuousClock.now
  let moved = try await body()
  precondition(moved == messages, "moved \(moved) of \(messages) messages")
  let elapsed = ContinuousClock.now - start
  let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
  return Double(moved) / seconds
}

// MARK: native gRPC

func nativeRoute(_ client: Proto_StreamService.Client<HTTP2ClientTransport.Posix>) async throws -> Int {
  try await client.route { writer in
    for value in 0..<messages { try await writer.write(.with { $0.pt.value = Int32(value) }) }
  } onResponse: { response in
    try await response.messages.reduce(0) { count, _ in count + 1 }
  }
}

func nativeList(_ client: Proto_StreamService.Client<HTTP2ClientTransport.Posix>) async throws -> Int {
  try await client.list(.with { $0.pt.name = "bench" }) { response in
    try await response.messages.reduce(0) { count, _ in count + 1 }
  }
}

// MARK: WebSocket/JSON (a plain NIO WebSocket client)

/// Sends `frames`, counts the message frames received until `$end`.
func webSocketSession(port: Int, path: String, frames: @escaping @Sendable () -> [String]) async throws -> Int {
  let channel = try await WebSocketTestClient.connect(port: port, path: path)
  return try await channel.executeThenClose { inbound, outbound in
    try await withThrowingTaskGroup(of: Int.self) { group in
      group.addTask {
        for frame in frames() { try await outbound.write(WebSocketTestClient.text(frame)) }
        return 0
      }
      group.addTask {
        var count = 0
        for try await frame in inbound where frame.opcode == .text {
          if frame.data.readableBytesView.starts(with: Array(#"{"$end""#.utf8)) {
            try await outbound.write(WebSocketTestClient.close())
            return count
          }
          count += 1
        }
        return count
      }
      var total = 0
      for try await count in group { total += count }
      return total
    }
  }
}

// MARK: run

try await withThrowingDiscardingTaskGroup { group in
  group.addTask { try await gateway.run() }
  let (grpcPort, httpPort) = (try await gateway.grpcPort(), try await gateway.httpPort())
  try await withGRPCClient(
    transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: grpcPort), transportSecurity: .plaintext)
  ) { grpc in
    let client = Proto_StreamService.Client(wrapping: grpc)
    let routeFrames = (0..<messages).map { #"{"pt":{"name":"bench","value":\#($0)}}"# } + [#"{"$end":true}"#]
    let cases: [(String, @Sendable () async throws -> Int)] = [
      ("Route, native gRPC", { try await nativeRoute(client) }),
      (
        "Route, WebSocket/JSON",
        { try await webSocketSession(port: httpPort, path: "/proto.StreamService/Route") { routeFrames } }
      ),
      ("List, native gRPC", { try await nativeList(client) }),
      (
        "List, WebSocket/JSON",
        {
          try await webSocketSession(port: httpPort, path: "/proto.StreamService/List") {
            [#"{"pt":{"name":"bench"}}"#]
          }
        }
      ),
    ]
    print("BridgeBenchmark: \(messages) messages per run, \(runs) runs, median (min-max) messages/s")
    var medians: [String: Double] = [:]
    for (name, body) in cases {
      var rates: [Double] = []
      for _ in 0..<runs { rates.append(try await measure(body)) }
      rates.sort()
      medians[name] = rates[rates.count / 2]
      print(
        name.padding(toLength: 24, withPad: " ", startingAt: 0),
        String(format: "%10.0f  (%.0f-%.0f)", rates[rates.count / 2], rates.first!, rates.last!)
      )
    }
    for kind in ["Route", "List"] {
      let ratio = medians["\(kind), WebSocket/JSON"]! / medians["\(kind), native gRPC"]!
      print("\(kind): WebSocket/JSON runs at \(String(format: "%.2f", ratio))x native gRPC")
    }
  }
  await gateway.beginGracefulShutdown()
}

internal import Foundation
internal import GRPCCore
internal import NIOCore
internal import NIOHTTP1
internal import NIOPosix
internal import NIOSSL
internal import NIOWebSocket
import Sluice
internal import SluiceCodec

/// `sluice call --via ws`: one WebSocket/JSON session on a Sluice gateway's HTTP port (PROTOCOL:
/// one RPC per WebSocket, one JSON object per text frame). Lines go out as frames as they are
/// read, then `{"$end":true}`; messages are printed as they arrive, and `$end` is the status.
/// With `--mux` the call is one stream of a multiplexed session on `/` instead: the same lines as
/// `message` frames of stream 1, within the request credit the gateway grants.
/// Written on NIOWebSocket's client upgrade: no WebSocket client library is in the package mirror.
enum WebSocketCall {
  private enum Upgrade: Sendable {
    case webSocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>)
    case refused(NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>)
  }

  static func run(_ call: CallRequest, mux: Bool) async throws -> CallStatus {
    let (connection, name, requests, timeout, verbose) = (
      call.connection, call.method, call.requests, call.timeout, call.verbose
    )
    let target = try connection.target()
    let path = mux ? "/" : name.path
    var headers = HTTPHeaders([("Host", target.description), ("Content-Length", "0")])
    if mux { headers.add(name: "Sec-WebSocket-Protocol", value: "sluice.mux.v1") }
    headers.add(contentsOf: try GatewayJSON.headers(connection, timeout: timeout))
    let tls = try connection.tls ? ClientTLS.context(ca: connection.ca) : nil
    let upgrade: EventLoopFuture<Upgrade>
    do {
      upgrade = try await ClientBootstrap(group: .singletonMultiThreadedEventLoopGroup)
        .connectTimeout(.seconds(10))
        .connect(host: target.host, port: target.port) { channel in
          channel.eventLoop.makeCompletedFuture {
            if let tls {
              let sni = ClientTLS.serverName(target.host)
              try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: sni))
            }
            let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(maxFrameSize: 1 << 26) { channel, _ in
              channel.eventLoop.makeCompletedFuture {
                .webSocket(try NIOAsyncChannel(wrappingChannelSynchronously: channel))
              }
            }
            let configuration = NIOTypedHTTPClientUpgradeConfiguration<Upgrade>(
              upgradeRequestHead: HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers),
              upgraders: [upgrader],
              notUpgradingCompletionHandler: { channel in
                channel.eventLoop.makeCompletedFuture {
                  .refused(try NIOAsyncChannel(wrappingChannelSynchronously: channel))
                }
              }
            )
            var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration)
            // Frames the gateway sends right behind its 101 (an immediate `$end`) arrive with it.
            pipeline.leftOverBytesStrategy = .forwardBytes
            return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: pipeline)
          }
        }
    } catch {
      return CallStatus(.unavailable, "cannot connect to \(target): \(error)")
    }
    do {
      switch try await upgrade.get() {
      case .refused(let channel):
        return try await Self.refusal(channel)
      case .webSocket(let channel):
        if mux { return try await Self.muxSession(channel, path: name.path, requests: requests, verbose: verbose) }
        return try await Self.session(channel, requests: requests, verbose: verbose)
      }
    } catch let status as CallStatus {
      throw status
    } catch {
      // A TLS handshake that failed, a connection lost mid-handshake.
      return CallStatus(.unavailable, "\(target): \(error)")
    }
  }

  /// A handshake the gateway refused: its HTTP status and `google.rpc.Status` body.
  private static func refusal(
    _ channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
  ) async throws -> CallStatus {
    try await channel.executeThenClose { inbound, _ in
      var status: HTTPResponseStatus = .badGateway
      var body = ByteBuffer()
      for try await part in inbound {
        switch part {
        case .head(let head): status = head.status
        case .body(var bytes): body.writeBuffer(&bytes)
        case .end: return HTTPResponseStatusJSON.failure(status: status, body: body)
        }
      }
      return HTTPResponseStatusJSON.failure(status: status, body: body)
    }
  }

  private static func session(
    _ channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>,
    requests: AsyncStream<String>,
    verbose: Bool
  ) async throws -> CallStatus {
    try await channel.executeThenClose { inbound, outbound in
      try await withThrowingTaskGroup(of: CallStatus?.self) { group in
        group.addTask {
          for await line in requests {
            try await outbound.write(Self.text(line))
          }
          try await outbound.write(Self.text(#"{"$end":true}"#))
          return nil
        }
        group.addTask {
          try await Self.read(inbound, outbound, last: "$end") { text in Self.end(text, verbose: verbose) }
        }
        return try await Self.firstStatus(&group)
      }
    }
  }

  /// One stream (id 1) of a multiplexed session: `start`, each line as a `message` while the
  /// gateway's request credit lasts (16, then what its `credit` frames grant), then `end`.
  private static func muxSession(
    _ channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>,
    path: String,
    requests: AsyncStream<String>,
    verbose: Bool
  ) async throws -> CallStatus {
    let (grants, granted) = AsyncStream<Int>.makeStream()
    return try await channel.executeThenClose { inbound, outbound in
      try await withThrowingTaskGroup(of: CallStatus?.self) { group in
        group.addTask {
          let start = JSONValue.string(path).serialized
          try await outbound.write(Self.text(#"{"id":1,"start":\#(start)}"#))
          var credit = 16
          var more = grants.makeAsyncIterator()
          for await line in requests {
            while credit == 0 {
              guard let grant = await more.next() else { return nil }
              credit += grant
            }
            credit -= 1
            try await outbound.write(Self.text(#"{"id":1,"message":\#(line)}"#))
          }
          try await outbound.write(Self.text(#"{"id":1,"end":true}"#))
          return nil
        }
        group.addTask {
          defer { granted.finish() }
          return try await Self.read(inbound, outbound, last: "its end") { text in
            Self.muxFrame(text, verbose: verbose, granted: granted)
          }
        }
        return try await Self.firstStatus(&group)
      }
    }
  }

  /// Reads the gateway's text frames (answering pings) until `handle` returns a status; then
  /// sends Close. `last` names the frame whose absence a closed connection reports.
  private static func read(
    _ inbound: NIOAsyncChannelInboundStream<WebSocketFrame>,
    _ outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>,
    last: String,
    handle: (String) -> CallStatus?
  ) async throws -> CallStatus {
    var message = ByteBuffer()
    for try await frame in inbound {
      switch frame.opcode {
      case .ping:
        try await outbound.write(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData))
      case .text, .continuation:
        var data = frame.unmaskedData
        message.writeBuffer(&data)
        guard frame.fin else { continue }
        let text = String(buffer: message)
        message.clear()
        if let end = handle(text) {
          try? await outbound.write(
            WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: ByteBuffer(bytes: [3, 232])))
          return end
        }
      case .connectionClose:
        return CallStatus(.unavailable, "the gateway closed the WebSocket without \(last)")
      default:
        continue
      }
    }
    return CallStatus(.unavailable, "the connection closed without \(last)")
  }

  /// The first status one of the group's tasks returns (the sender returns nil when done).
  private static func firstStatus(_ group: inout ThrowingTaskGroup<CallStatus?, any Error>) async throws -> CallStatus {
    while let result = try await group.next() {
      if let result {
        group.cancelAll()
        return result
      }
    }
    return CallStatus(.unknown, "the session ended without a status")
  }

  /// Prints a frame of stream 1: a message to stdout (its JSON as the gateway wrote it), headers to
  /// stderr with `-v`; passes request credit on; returns the status of its `end`.
  private static func muxFrame(_ text: String, verbose: Bool, granted: AsyncStream<Int>.Continuation) -> CallStatus? {
    let prefix = #"{"id":1,"message":"#
    if text.hasPrefix(prefix), text.hasSuffix("}") {
      ClientOutput.line(String(text.dropFirst(prefix.count).dropLast()))
      return nil
    }
    guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any],
      (object["id"] as? Int) == 1
    else { return nil }  // a pong, or another stream's frame
    if let end = object["end"] as? [String: Any] { return GatewayJSON.status(ofEnd: end, verbose: verbose) }
    if let headers = object["headers"] as? [String: Any], verbose { GatewayJSON.print("headers", headers) }
    if let credit = object["credit"] as? Int { granted.yield(credit) }
    return nil
  }

  /// Prints a frame: a message to stdout, `$headers` to stderr with `-v`; returns the status of a
  /// `$end`.
  private static func end(_ text: String, verbose: Bool) -> CallStatus? {
    guard let object = GatewayJSON.control(text) else {
      ClientOutput.line(text)
      return nil
    }
    if let end = object["$end"] as? [String: Any] {
      return GatewayJSON.status(ofEnd: end, verbose: verbose)
    }
    if let headers = object["$headers"] as? [String: Any] {
      if verbose { GatewayJSON.print("headers", headers) }
      return nil
    }
    ClientOutput.line(text)
    return nil
  }

  private static func text(_ text: String) -> WebSocketFrame {
    WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: text))
  }
}

/// The TLS of `--tls` for the WebSocket client.
enum ClientTLS {
  static func context(ca: String?) throws -> NIOSSLContext {
    var configuration = TLSConfiguration.makeClientConfiguration()
    if let ca { configuration.trustRoots = .file(ca) }
    configuration.applicationProtocols = ["http/1.1"]
    return try NIOSSLContext(configuration: configuration)
  }

  /// The SNI name for `host`: none for an IP address.
  static func serverName(_ host: String) -> String? {
    (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
  }
}

/// The status of an HTTP answer that is not a call's own stream: the gateway's `google.rpc.Status`
/// body (`{"code":5,"message":…}`), or the HTTP status when the body is not one.
enum HTTPResponseStatusJSON {
  static func failure(status: HTTPResponseStatus, body: ByteBuffer) -> CallStatus {
    let text = String(buffer: body)
    if let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
      let code = object["code"] as? Int
    {
      return CallStatus(code: code, (object["message"] as? String) ?? "")
    }
    return CallStatus(.unknown, "HTTP \(status.code) \(status.reasonPhrase): \(text.prefix(200))")
  }
}

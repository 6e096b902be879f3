public import NIOCore
internal import NIOHTTP1
internal import NIOPosix
public import NIOWebSocket

/// A bare WebSocket client on NIOWebSocket, for the tests and benchmarks: it opens a session and
/// hands back the frame-level channel, so a caller controls every frame (and can vanish without
/// a Close). Not part of the gateway.
public enum WebSocketTestClient {
  enum Upgrade: Sendable {
    case webSocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>)
    case refused
  }

  /// Opens a WebSocket on `path` of 127.0.0.1:`port`.
  public static func connect(
    port: Int,
    path: String,
    headers extraHeaders: [(String, String)] = []
  ) async throws -> NIOAsyncChannel<WebSocketFrame, WebSocketFrame> {
    let upgrade = try await ClientBootstrap(group: .singletonMultiThreadedEventLoopGroup)
      .connect(host: "127.0.0.1", port: port) { channel in
        channel.eventLoop.makeCompletedFuture {
          let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(maxFrameSize: 1 << 24) { channel, _ in
            channel.eventLoop.makeCompletedFuture {
              .webSocket(try NIOAsyncChannel(wrappingChannelSynchronously: channel))
            }
          }
          var headers = HTTPHeaders([("Host", "127.0.0.1:\(port)"), ("Content-Length", "0")])
          headers.add(contentsOf: extraHeaders)
          let configuration = NIOTypedHTTPClientUpgradeConfiguration<Upgrade>(
            upgradeRequestHead: HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers),
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { $0.eventLoop.makeSucceededFuture(.refused) }
          )
          var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration)
          // Frames the server sends right behind its 101 (an immediate `$end`) arrive with it.
          pipeline.leftOverBytesStrategy = .forwardBytes
          return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: pipeline)
        }
      }
    guard case .webSocket(let channel) = try await upgrade.get() else {
      throw WebSocketTestClientError(message: "the server refused the WebSocket upgrade on \(path)")
    }
    return channel
  }

  /// A masked text frame, as a client must send it.
  public static func text(_ text: String) -> WebSocketFrame {
    WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: text))
  }

  /// A masked Close frame with a status code.
  public static func close(code: UInt16 = 1000) -> WebSocketFrame {
    var data = ByteBuffer()
    data.writeInteger(code)
    return WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data)
  }
}

/// The upgrade was refused.
public struct WebSocketTestClientError: Error {
  /// What went wrong.
  public var message: String
}

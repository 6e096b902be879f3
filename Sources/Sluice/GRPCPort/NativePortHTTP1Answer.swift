internal import NIOCore

/// What an HTTP/1.1 client gets on the native port, which speaks HTTP/2 only (gRPC, and gRPC-Web
/// over HTTP/2): one `505 HTTP Version Not Supported` that names the HTTP port, then the
/// connection closes. Without it, curl or a gRPC-Web client over HTTP/1.1 read HTTP/2 frames as a
/// garbled status line.
final class NativePortHTTP1Answer: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  static let body =
    "This is Sluice's native gRPC port: it speaks HTTP/2 only (gRPC, and gRPC-Web over HTTP/2). "
    + "Send HTTP/1.1 requests (gRPC-Web, HTTP JSON, WebSocket) to the HTTP port (--http-port, 8080 by default), "
    + "or use HTTP/2 (prior knowledge on h2c, ALPN h2 under TLS).\n"

  private var answered = false

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !self.answered else { return }
    self.answered = true
    let head =
      "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain; charset=utf-8\r\n"
      + "Connection: close\r\nContent-Length: \(Self.body.utf8.count)\r\n\r\n"
    let answer = context.channel.allocator.buffer(string: head + Self.body)
    context.writeAndFlush(Self.wrapOutboundOut(answer)).assumeIsolated().whenComplete { _ in
      context.close(promise: nil)
    }
  }
}

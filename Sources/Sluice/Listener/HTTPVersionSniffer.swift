internal import NIOCore

/// With `--grpc-on-http-port`, tells a connection's protocol by its first bytes: the HTTP/2 client
/// preface (RFC 9113 §3.4; gRPC clients send it by prior knowledge on h2c, and after ALPN `h2` or
/// `grpc-exp` under TLS) makes it a native gRPC connection, anything else HTTP/1.1 (WebSocket,
/// HTTP JSON, the page). `decide` sets up the rest of the pipeline behind this handler, which
/// then hands it the bytes it held and leaves. Written by hand: NIO's HTTP/2 helpers negotiate by
/// ALPN or the HTTP/1.1 `Upgrade: h2c` dance, not by the preface on a plaintext port.
final class HTTPVersionSniffer: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer

  static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

  private let timeout: TimeAmount
  private let decide: (_ isHTTP2: Bool) throws -> Void
  private var held: ByteBuffer?
  private var timer: Scheduled<Void>?

  /// - Parameters:
  ///   - timeout: How long a client may take to send enough to tell (`--handshake-timeout`).
  ///   - decide: Sets up the pipeline for HTTP/2 (`true`) or HTTP/1.1.
  init(timeout: TimeAmount, decide: @escaping (_ isHTTP2: Bool) throws -> Void) {
    self.timeout = timeout
    self.decide = decide
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.timer = context.closeLater(in: self.timeout)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.timer?.cancel()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    var bytes = Self.unwrapInboundIn(data)
    if var held = self.held {
      held.writeBuffer(&bytes)
      bytes = held
    }
    let count = min(bytes.readableBytes, Self.preface.count)
    guard let start = bytes.getBytes(at: bytes.readerIndex, length: count) else { return }
    let isHTTP2 = start[...] == Self.preface[..<count]
    guard !isHTTP2 || count == Self.preface.count else {
      self.held = bytes  // a prefix of the preface so far
      return
    }
    self.timer?.cancel()
    self.held = nil
    do {
      try self.decide(isHTTP2)
    } catch {
      context.close(promise: nil)
      return
    }
    context.fireChannelRead(Self.wrapInboundOut(bytes))
    context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
  }
}

internal import GRPCCore
internal import NIOCore
internal import NIOHTTP1

/// Answers a request that HTTP/1.1 itself rejects (bad framing, conflicting Transfer-Encoding
/// and Content-Length, oversized head …) with a `google.rpc.Status` JSON body, as every other
/// error on this port, instead of NIO's empty 400, and closes the connection (nothing after a
/// framing error can be trusted).
///
/// Replaces NIO's `HTTPServerProtocolErrorHandler`, which answers with no body; same place in the
/// pipeline, and like it, it answers only when no response has started (`HTTPConnectionHandler`
/// ends a started one).
final class HTTPProtocolErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias InboundOut = HTTPServerRequestPart
  typealias OutboundIn = HTTPServerResponsePart
  typealias OutboundOut = HTTPServerResponsePart

  private var responseOpen = false

  /// How long the answer's connection stays readable before it closes.
  static let lingerTime = TimeAmount.seconds(2)

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    guard let parserError = error as? HTTPParserError else {
      context.fireErrorCaught(error)
      return
    }
    if !self.responseOpen {
      let tooLarge = parserError == .headerOverflow
      let response = HTTPStatusResponse(
        tooLarge ? .requestHeaderFieldsTooLarge : .badRequest,
        code: tooLarge ? .resourceExhausted : .invalidArgument,
        message: tooLarge
          ? "request head larger than the limit (--max-header-bytes)" : "malformed HTTP request: \(parserError)"
      )
      response.write(from: context).assumeIsolated().whenComplete { _ in
        // Half-close and read on for a moment: closing with the rest of the client's request still
        // unread would reset the connection, and the client could lose the answer.
        context.close(mode: .output, promise: nil)
        context.closeLater(in: Self.lingerTime)
      }
    }
    // Otherwise the response has begun: the connection's handler ends it (a `$end` line) and
    // closes the connection.
    context.fireErrorCaught(error)
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    switch Self.unwrapOutboundIn(data) {
    case .head(let head) where (100..<200).contains(head.status.code): break  // 100 Continue
    case .head: self.responseOpen = true
    case .body: break
    case .end: self.responseOpen = false
    }
    context.write(data, promise: promise)
  }
}

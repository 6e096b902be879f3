internal import GRPCCore
internal import NIOCore
internal import NIOHTTP1

/// `--body-timeout` for the body of each HTTP request that carries one message (every request but
/// the NDJSON streams of client-streaming and bidi methods, whose lines `HTTPCall` times itself):
/// the body must end within the timeout of its head, or the connection gets 408 with a
/// `google.rpc.Status` body (`DEADLINE_EXCEEDED`) and is closed.
///
/// A handler on the connection's event loop, behind the upgrade handler: a body that arrives
/// with its head in one read costs no timer at all, and one that takes longer costs a timer on the
/// loop, never a wake-up from another thread.
final class RequestBodyTimeout: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias InboundOut = HTTPServerRequestPart
  typealias OutboundIn = HTTPServerResponsePart
  typealias OutboundOut = HTTPServerResponsePart

  private let bodyTimeout: Duration
  private let timeout: TimeAmount
  private let streamsBody: (HTTPRequestHead) -> Bool
  /// When the current request's head arrived, while its body is still to come.
  private var pendingSince: NIODeadline?
  private var timer: Scheduled<Void>?
  /// Whether an answer to the current request has begun (then a timeout only closes).
  private var answered = false

  /// - Parameters:
  ///   - bodyTimeout: How long a body may take.
  ///   - streamsBody: Whether a request's body is a stream of messages (timed per message by
  ///     its call instead).
  init(bodyTimeout: Duration, streamsBody: @escaping (HTTPRequestHead) -> Bool) {
    self.bodyTimeout = bodyTimeout
    self.timeout = TimeAmount(bodyTimeout)
    self.streamsBody = streamsBody
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch Self.unwrapInboundIn(data) {
    case .head(let head):
      self.answered = false
      self.pendingSince = self.streamsBody(head) ? nil : context.eventLoop.now
    case .end:
      self.pendingSince = nil
      self.timer?.cancel()
      self.timer = nil
    case .body:
      break
    }
    context.fireChannelRead(data)
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    if let since = self.pendingSince, self.timer == nil {
      let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
      self.timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: since + self.timeout) {
        self.expire(loopBound.value)
      }
    }
    context.fireChannelReadComplete()
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    // `100 Continue` (for `Expect: 100-continue`) asks for the body: no answer yet.
    if case .head(let head) = Self.unwrapOutboundIn(data), head.status.code >= 200 { self.answered = true }
    context.write(data, promise: promise)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.timer?.cancel()
  }

  private func expire(_ context: ChannelHandlerContext) {
    self.timer = nil
    guard self.pendingSince != nil else { return }
    self.pendingSince = nil
    guard !self.answered else {
      context.close(promise: nil)  // an answer already began (an early error): just end it
      return
    }
    let error = GRPCErrors.bodyTimedOut("the request body", after: self.bodyTimeout)
    HTTPStatusResponse(.requestTimeout, code: error.code, message: error.message)
      .write(from: context).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
  }
}

extension HTTPRequestHead {
  /// The request's path without its query: an RPC's `/<package>.<Service>/<Method>`, or a file's.
  var path: String {
    guard let query = self.uri.utf8.firstIndex(of: UInt8(ascii: "?")) else { return self.uri }
    return String(self.uri[..<query])
  }
}

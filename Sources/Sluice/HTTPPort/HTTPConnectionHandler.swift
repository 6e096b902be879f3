internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHTTP1
internal import SluiceCodec

/// What every connection of the HTTP port shares.
final class HTTPPort: Sendable {
  let engine: RPCEngine
  /// The protocols picked by content type (gRPC-Web), shared with the native port.
  let router: ExchangeRouter
  let bridges: JSONBridgeSource
  /// The JSON bridge new calls take (see `JSONBridgeSource`).
  var bridge: JSONBridge { self.bridges.current }
  /// The port's own settings.
  let http: GatewayConfiguration.HTTPPort
  /// What every call shares (message size, body deadline).
  let calls: GatewayConfiguration.Calls
  /// Whether the port is TLS.
  let secure: Bool
  let originPolicy: OriginPolicy
  let staticFiles: StaticFiles?
  let budget: RequestByteBudget
  let metrics: GatewayMetrics
  let logger: Logger

  init(
    engine: RPCEngine,
    router: ExchangeRouter,
    bridges: JSONBridgeSource,
    http: GatewayConfiguration.HTTPPort,
    calls: GatewayConfiguration.Calls,
    secure: Bool,
    originPolicy: OriginPolicy,
    staticFiles: StaticFiles?,
    budget: RequestByteBudget,
    metrics: GatewayMetrics,
    logger: Logger
  ) {
    self.engine = engine
    self.router = router
    self.bridges = bridges
    self.http = http
    self.calls = calls
    self.secure = secure
    self.originPolicy = originPolicy
    self.staticFiles = staticFiles
    self.budget = budget
    self.metrics = metrics
    self.logger = logger
  }
}

/// One HTTP/1.1 connection that did not become a WebSocket, served on its event loop: requests
/// one after another (keep-alive), each an HTTP JSON call (`HTTPCall`), a call of a protocol the
/// `ExchangeRouter` picks (gRPC-Web, with this connection as its `HTTPExchange`), a CORS
/// preflight, `/metrics` or a file of `public/`.
///
/// The request/response cycle (keep-alive, pipelined parts queued, skipping the rest of a request
/// answered early, shutdown) is `HTTPConnectionStateMachine`'s; this handler feeds it, dispatches
/// heads, hands parts to the call and keeps the timers: `--idle-timeout` between requests, and
/// `skipLimit.time` for skipping.
final class HTTPConnectionHandler: ChannelDuplexHandler, TurnFlushing, TurnBatched {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundIn = HTTPServerResponsePart
  typealias OutboundOut = HTTPServerResponsePart

  /// How long, and how many bytes (in `--max-message-bytes`), the rest of an unread request may
  /// take to skip.
  static let skipLimit = (time: TimeAmount.seconds(2), bytesPerMessageLimit: 2)

  private enum Request {
    /// Waiting for a request head.
    case idle
    /// An RPC: the parts go to it.
    case call(HTTPCall)
    /// A call of a protocol picked by the `ExchangeRouter`: the parts go to it.
    case exchange(any HTTPExchangeHandler)
    /// Answered (or being answered) without reading the body: its parts are skipped.
    case answered
  }

  private let port: HTTPPort
  let eventLoop: any EventLoop
  private var context: ChannelHandlerContext?
  private var request = Request.idle
  private var machine: HTTPConnectionStateMachine
  /// An exchange's body bytes not yet handed to the channel (see `writeBody`).
  private var pendingBody: ByteBuffer?
  private var timer: Scheduled<Void>?
  private var readPending = false
  /// The call holds its requests back (`HTTPCall.holdRequests`): reading stops.
  private var requestsHeld = false
  /// Writes are flushed once per read, callback or loop turn.
  let turn: ConnectionTurn
  private var counted = false
  /// The write of the last response's end.
  private var responseWritten: EventLoopFuture<Void>?
  /// Inside `next()`'s replay of queued parts.
  private var replaying = false

  init(port: HTTPPort, eventLoop: any EventLoop, quiescing: Bool) {
    self.port = port
    self.eventLoop = eventLoop
    self.turn = ConnectionTurn(eventLoop: eventLoop)
    self.machine = HTTPConnectionStateMachine(
      skipLimit: port.calls.maxMessageBytes.multipliedReportingOverflow(by: Self.skipLimit.bytesPerMessageLimit)
        .partialValue,
      quiescing: quiescing
    )
  }

  var allocator: ByteBufferAllocator { self.context?.channel.allocator ?? ByteBufferAllocator() }

  var isWritable: Bool { self.context?.channel.isWritable ?? false }

  var remoteAddress: SocketAddress? { self.context?.channel.remoteAddress }

  /// While `hold` is true the connection reads nothing more (its call's handler cannot take more
  /// request messages).
  func holdRequests(_ hold: Bool) {
    self.requestsHeld = hold
    if !hold { self.resumeReading() }
  }

  // MARK: - Channel events

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.turn.attach(self)
    self.counted = true
    self.port.metrics.connectionOpened(.http)
    self.armIdleTimer()
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.gone()
    self.context = nil
    self.turn.detach()
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.gone()
    context.fireChannelInactive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    self.turn.beginRead()
    let part = Self.unwrapInboundIn(data)
    if self.machine.read(part) == .handle { self.received(part) }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    self.turn.endRead(always: false)
    context.fireChannelReadComplete()
  }

  func flushConnection() {
    self.context?.flush()
  }

  func writePending() {
    self.writePendingBody()
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable {
      switch self.request {
      case .call(let call): self.turn.inCallback { call.connectionBecameWritable() }
      case .exchange(let handler): self.turn.inCallback { handler.becameWritable() }
      case .idle, .answered: break
      }
      self.resumeReading()
    }
    context.fireChannelWritabilityChanged()
  }

  func read(context: ChannelHandlerContext) {
    // While the channel cannot take more output, or the next request waits for this response,
    // the client's bytes stay in TCP.
    if context.channel.isWritable, self.machine.mayRead, !self.requestsHeld {
      context.read()
    } else {
      self.readPending = true
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    // A request HTTP/1.1 itself rejects after its call's response began (`HTTPProtocolErrorHandler`
    // answers the others): the call ends with a `$end` line, then the connection closes.
    if let parserError = error as? HTTPParserError {
      let inCall: Bool
      switch self.request {
      case .call, .exchange: inCall = true
      case .idle, .answered: inCall = false
      }
      switch (self.machine.receivedMalformedRequest(callInProgress: inCall), self.request) {
      case (.failRequestInProgress, .call(let call)):
        self.turn.inCallback {
          call.requestFailed(GRPCErrors.malformedHTTPRequest(parserError))
        }
      case (.failRequestInProgress, .exchange(let handler)):
        // The body broke HTTP/1.1 framing: its call is cancelled, and the connection closed.
        self.request = .answered
        self.turn.inCallback { handler.exchangeGone() }
        self.close()
      case (.failRequestInProgress, _), (.answeredElsewhere, _):
        // Answered by `HTTPProtocolErrorHandler`, which closes the connection: nothing more here.
        break
      }
    }
    context.fireErrorCaught(error)
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    guard event is ChannelShouldQuiesceEvent else {
      context.fireUserInboundEventTriggered(event)
      return
    }
    switch self.machine.quiesce() {
    case .close:
      self.close()
    case .finishRequest:
      if case .exchange(let handler) = self.request { self.turn.inCallback { handler.quiesce() } }
    }
  }

  // MARK: - Requests

  private func received(_ part: HTTPServerRequestPart) {
    switch part {
    case .head(let head):
      guard self.machine.receivedHead(keepAlive: head.isKeepAlive) == .dispatch else { return }
      self.timer?.cancel()
      self.timer = nil
      self.dispatch(head)
    case .body(let chunk):
      switch self.machine.receivedBody(bytes: chunk.readableBytes) {
      case .deliver:
        if case .call(let call) = self.request {
          call.receivedBody(chunk)
        } else if case .exchange(let handler) = self.request {
          handler.receivedBody(chunk)
        }
      case .skip:
        break  // answered early: the rest is skipped, within the limits
      case .closeAfterResponse:
        self.closeAfterResponse()
      }
    case .end:
      let action = self.machine.receivedEnd()
      if action == .deliver {
        if case .call(let call) = self.request { call.receivedEnd() }
        if case .exchange(let handler) = self.request { handler.receivedEnd() }
      }
      self.carryOut(action)
    }
  }

  private func dispatch(_ head: HTTPRequestHead) {
    let path = head.path
    let origin = head.headers.first(name: "Origin")
    if let refusal = self.port.originPolicy.refusal(head.headers) {
      self.request = .answered
      self.answer(refusal, includingBody: head.method != .HEAD)
      return
    }
    let cors = CORS.headers(origin: origin)
    if head.headers["Upgrade"].contains(where: { $0.lowercased().contains("websocket") }) {
      // Only a connection's first request reaches the upgrade handler (SwiftNIO's leaves after
      // it); a handshake later on a kept-alive connection (a proxy's pooled connection) would
      // otherwise be served as a plain HTTP call.
      self.request = .answered
      self.answer(
        HTTPStatusResponse(
          .badRequest,
          code: .failedPrecondition,
          message:
            "a WebSocket handshake must be the first request on its connection: open a new connection for it (behind a proxy, one without keep-alive for upgrades; see docs/DEPLOYING.md)",
          headers: cors
        ),
        includingBody: true
      )
      return
    }
    if head.method != .OPTIONS {
      let request = HTTPExchangeRequest(method: head.method, uri: head.uri, headers: head.headers)
      // nil for a request none of the router's protocols takes (it has matched it once).
      if let handler = self.port.router.handler(for: request, on: self, cors: cors) {
        // The call may have answered at once (a refusal): its request's parts are then skipped.
        self.request = self.machine.responseEnded ? .answered : .exchange(handler)
        return
      }
    }
    let bridge = self.port.bridge
    let method = bridge.registry.method(path: path)
    switch head.method {
    case .OPTIONS:
      self.request = .answered
      var headers = CORS.preflightHeaders(origin: origin, request: head.headers)
      var allowed = ["GET", "HEAD", "OPTIONS"]
      if let method {
        allowed = HTTPCall.allowedMethods(for: method, allowGet: self.port.http.allowGetCalls).map { "\($0)" }
      }
      headers.add(name: "Allow", value: allowed.joined(separator: ", "))
      headers.add(name: "Content-Length", value: "0")
      self.write(.head(HTTPResponseHead(version: .http1_1, status: .noContent, headers: headers)))
      self.endResponse(keepAlive: true)
    case _ where method != nil:
      guard let method, let context = self.context else { return }
      let call = HTTPCall(
        connection: self,
        eventLoop: context.eventLoop,
        port: self.port,
        bridge: bridge,
        method: method,
        head: head,
        cors: cors
      )
      self.request = .call(call)
      call.begin()
    case .GET where path == "/openapi.json":
      self.request = .answered
      self.serveOpenAPI(head, cors: cors)
    case .GET where path == "/metrics":
      self.request = .answered
      self.serveMetrics(head, cors: cors)
    case .GET, .HEAD:
      self.request = .answered
      self.serveFile(head, cors: cors)
    default:
      // A POST (or anything else) to a path that is no method: without a valid token, the same
      // 401 a real method gives (methods cannot be enumerated).
      self.request = .answered
      if let refusal = self.port.engine.credentialRefusal(head.headers["Authorization"]) {
        var headers = cors
        headers.add(name: "WWW-Authenticate", value: "Bearer")
        self.answer(
          HTTPStatusResponse(.unauthorized, code: refusal.code, message: refusal.message, headers: headers),
          includingBody: true
        )
        return
      }
      let error = GRPCErrors.unknownMethod(path)
      self.answer(
        HTTPStatusResponse(
          .notImplemented,
          code: error.code,
          message: "\(error.message): paths are /<package>.<Service>/<Method>",
          headers: cors
        ),
        includingBody: true
      )
    }
  }

  /// Whether `head` may read `path` (`/metrics`, `/openapi.json`): the engine's `--require-bearer`
  /// check, as for every RPC; answered 401 when not.
  private func authorized(_ head: HTTPRequestHead, _ path: String, cors: HTTPHeaders) -> Bool {
    guard let authenticator = self.port.engine.authenticator,
      !authenticator.allows(authorization: head.headers.first(name: "Authorization"))
    else { return true }
    var headers = cors
    headers.add(name: "WWW-Authenticate", value: "Bearer")
    self.answer(
      HTTPStatusResponse(
        .unauthorized,
        code: .unauthenticated,
        message: "\(path) requires authorization: Bearer <token> (--require-bearer)",
        headers: headers
      ),
      includingBody: true
    )
    return false
  }

  /// The OpenAPI 3.1 document of the REST routes of the descriptors in use.
  private func serveOpenAPI(_ head: HTTPRequestHead, cors: HTTPHeaders) {
    guard self.authorized(head, "/openapi.json", cors: cors) else { return }
    self.answerOK(self.port.bridge.openAPIDocument, contentType: "application/json", cors: cors)
  }

  private func serveMetrics(_ head: HTTPRequestHead, cors: HTTPHeaders) {
    guard self.authorized(head, "/metrics", cors: cors) else { return }
    self.answerOK(
      self.port.metrics.exposition(), contentType: "text/plain; version=0.0.4; charset=utf-8", cors: cors)
  }

  /// A 200 with `body`; the connection stays open.
  private func answerOK(_ body: [UInt8], contentType: String, cors: HTTPHeaders) {
    var headers = cors
    headers.add(name: "Content-Type", value: contentType)
    headers.add(name: CORS.noSniff.name, value: CORS.noSniff.value)
    headers.add(name: "Content-Length", value: "\(body.count)")
    self.write(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)))
    self.write(.body(.byteBuffer(self.allocator.buffer(bytes: body))))
    self.endResponse(keepAlive: true)
  }

  /// A file of `public/`: read off the loop (files are not the hot path), answered on it.
  private func serveFile(_ head: HTTPRequestHead, cors: HTTPHeaders) {
    guard let context = self.context else { return }
    let files = self.port.staticFiles
    let path = head.path
    context.eventLoop.makeFutureWithTask { await files?.file(at: path) }.assumeIsolated().whenComplete { result in
      guard self.context != nil, !self.machine.responseEnded else { return }
      guard case .success(let file?) = result else {
        self.answer(
          HTTPStatusResponse(.notFound, code: .notFound, message: "no file at \(path)", headers: cors),
          includingBody: head.method != .HEAD
        )
        return
      }
      var headers = cors
      headers.add(name: "Content-Type", value: file.contentType)
      headers.add(name: CORS.noSniff.name, value: CORS.noSniff.value)
      headers.add(name: "Content-Length", value: "\(file.body.readableBytes)")
      headers.add(name: "Cache-Control", value: "no-cache")
      self.write(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)))
      if head.method == .GET { self.write(.body(.byteBuffer(file.body))) }
      self.endResponse(keepAlive: true)
    }
  }

  // MARK: - Responses (for `HTTPCall` too)

  func write(_ part: HTTPServerResponsePart) {
    self.writePendingBody()
    self.context?.write(Self.wrapOutboundOut(part), promise: nil)
  }

  /// Writes the exchange's body bytes gathered this turn, as one chunk.
  private func writePendingBody() {
    guard let body = self.pendingBody else { return }
    self.pendingBody = nil
    self.context?.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
  }

  /// Ends the current response; the connection carries another request when `keepAlive`, the
  /// request's own `Connection` and a shutdown allow it.
  func endResponse(keepAlive: Bool) {
    guard let context = self.context, !self.machine.responseEnded else { return }
    self.writePendingBody()
    let action = self.machine.responseDidEnd(keepAlive: keepAlive)
    self.responseWritten = context.writeAndFlush(Self.wrapOutboundOut(.end(nil)))
    self.carryOut(action)
  }

  /// Goes on after a request's or a response's end, as the state machine says.
  private func carryOut(_ action: HTTPConnectionStateMachine.EndAction) {
    switch action {
    case .nextRequest:
      self.next()
    case .closeAfterResponse:
      self.closeAfterResponse()
    case .skipRest:
      // Skip the rest of the request, within the limits, so that a client still sending it reads
      // the answer rather than a reset connection; then go on (keep-alive) or close.
      self.timer = self.context?.eventLoop.assumeIsolated().scheduleTask(in: Self.skipLimit.time) {
        self.closeAfterResponse()
      }
    case .deliver, .none:
      break
    }
  }

  /// An answer whose body is a `google.rpc.Status`; the connection closes after it.
  func answer(_ response: HTTPStatusResponse, includingBody: Bool) {
    guard !self.machine.responseEnded else { return }
    self.write(.head(response.head))
    if includingBody { self.write(.body(.byteBuffer(self.allocator.buffer(bytes: response.body)))) }
    self.endResponse(keepAlive: false)
  }

  /// Flushes at the end of the current read or callback, or on the loop's next task outside one.
  func flushSoon() {
    self.turn.flushSoon()
  }

  /// Runs a call's timer (its deadline, a line's `--body-timeout`) as one turn.
  func inCallback(_ body: () -> Void) {
    self.turn.inCallback(body)
  }

  // MARK: - Between requests

  /// The request and its response are done: wait for the next one.
  private func next() {
    self.request = .idle
    self.timer?.cancel()
    self.timer = nil
    guard self.machine.beginNextRequest() else {
      self.close()  // shutting down
      return
    }
    guard !self.replaying else { return }  // the replay below goes on with the next part
    self.replaying = true
    while let part = self.machine.nextQueuedPart() {
      self.received(part)
    }
    self.replaying = false
    if self.machine.isIdle { self.armIdleTimer() }
    self.resumeReading()
  }

  private func armIdleTimer() {
    guard let context = self.context else { return }
    self.timer?.cancel()
    self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(self.port.http.idleTimeout)) {
      self.close()
    }
  }

  private func resumeReading() {
    guard self.readPending, self.machine.mayRead, !self.requestsHeld, let context = self.context,
      context.channel.isWritable
    else { return }
    self.readPending = false
    context.read()
  }

  /// Closes once the last response has been written (a close before would drop what is still
  /// queued for a slow reader).
  private func closeAfterResponse() {
    self.machine.close()
    guard let written = self.responseWritten, let context = self.context else { return self.close() }
    written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
  }

  private func close() {
    self.machine.close()
    self.timer?.cancel()
    self.timer = nil
    self.context?.close(promise: nil)
  }

  private func gone() {
    self.timer?.cancel()
    self.timer = nil
    if case .call(let call) = self.request { call.clientGone() }
    if case .exchange(let handler) = self.request { handler.exchangeGone() }
    self.request = .idle
    self.machine.reset()
    if self.counted {
      self.counted = false
      self.port.metrics.connectionClosed(.http)
    }
  }
}

/// The connection as the `HTTPExchange` of a call the `ExchangeRouter` picked.
extension HTTPConnectionHandler: HTTPExchange {
  var outputTurn: ConnectionTurn? { self.turn }

  var isSecure: Bool { self.port.secure }

  var isHTTP2: Bool { false }

  func writeHead(_ status: HTTPResponseStatus, headers: HTTPHeaders) {
    var headers = headers
    if self.machine.closesAfterResponse { headers.replaceOrAdd(name: "Connection", value: "close") }
    self.write(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)))
  }

  /// Gathers the body bytes an exchange writes in one turn (a server stream's messages that came
  /// in one upstream read, then its trailer frame) into one chunk, written at the turn's flush or
  /// once 16 KiB are waiting: one chunk per message cost three iovecs and an encoder pass each.
  func writeBody(_ bytes: ByteBuffer) {
    guard bytes.readableBytes > 0 else { return }
    if var body = self.pendingBody {
      self.pendingBody = nil  // unique while written to: no copy
      var incoming = bytes
      body.writeBuffer(&incoming)
      self.pendingBody = body
    } else {
      self.pendingBody = bytes
      self.turn.writeAtFlush(self)
    }
    if let body = self.pendingBody, body.readableBytes >= GRPCStream.batchBytes { self.writePendingBody() }
    self.turn.flushSoon()
  }

  func endResponse(reusable: Bool) {
    self.endResponse(keepAlive: reusable)
  }
}

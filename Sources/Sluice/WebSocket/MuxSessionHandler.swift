internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP1
internal import NIOWebSocket
internal import SluiceCodec

/// A multiplexed WebSocket session (PROTOCOL.md, "Multiplexed WebSocket session"): any number of
/// RPCs on one socket, each a `MuxStream` on the engine's call lifecycle with its own credits, as
/// the last handler of the pipeline after an upgrade on `/`. Frames are read with `MuxFrame`;
/// what goes wrong with one stream ends that stream only, and what breaks the session's framing
/// (not an object, no readable id, a duplicate `start`) ends every stream and closes with 4400 or
/// 4409. No task, no lock, no hop: everything runs on the connection's event loop.
///
/// Backpressure: a stream waiting for its credit holds back only its own producer (see
/// `MuxStream`); a client that does not read at all makes the socket unwritable, and the session
/// then stops reading, as a single-RPC session does.
final class MuxSessionHandler: ChannelDuplexHandler, TurnFlushing {
  typealias InboundIn = WebSocketFrame
  typealias OutboundIn = WebSocketFrame
  typealias OutboundOut = WebSocketFrame

  /// What the handshake gave every stream of the session.
  struct Setup {
    var metadata: Metadata
    /// `grpc-timeout`: the deadline of a stream that sets no `timeoutMs`.
    var timeout: Duration?
    /// The handshake's headers (`Host` and `X-Forwarded-For` for proxied calls).
    var headers: HTTPHeaders
    /// The bridge, writing JSON as the handshake's `Sluice-JSON-Output` asks.
    var bridge: JSONBridge
  }

  private enum State {
    case open
    /// The client's Close came: open streams finish, then the server closes with 1000.
    case clientClosed
    /// The server's Close went out; TCP closes on the client's Close or the timeout.
    case closing
    case closed
  }

  let eventLoop: any EventLoop
  let engine: RPCEngine
  let bridge: JSONBridge
  private let setup: Setup
  private let settings: WebSocketSessionHandler.Settings
  private let metrics: GatewayMetrics
  private let logger: Logger
  let turn: ConnectionTurn
  private let keepalive: WebSocketKeepalive
  private var context: ChannelHandlerContext?
  private var state = State.open
  private var streams: [MuxStreamID: MuxStream] = [:]
  /// A `read` held back while the socket is not writable.
  private var readPending = false
  private var closeTimer: Scheduled<Void>?
  /// The write of the server's Close: TCP closes after it, never over it.
  private var closeWritten: EventLoopFuture<Void>?
  private var counted = false
  /// The Close code once every stream has ended after the client's Close: 1000, or 1001 when a
  /// shutdown ended them.
  private var finalCloseCode = 1000

  init(
    eventLoop: any EventLoop,
    engine: RPCEngine,
    setup: Setup,
    settings: WebSocketSessionHandler.Settings,
    metrics: GatewayMetrics,
    logger: Logger
  ) {
    self.eventLoop = eventLoop
    self.engine = engine
    self.bridge = setup.bridge
    self.setup = setup
    self.settings = settings
    self.metrics = metrics
    self.logger = logger
    self.turn = ConnectionTurn(eventLoop: eventLoop)
    self.keepalive = WebSocketKeepalive(interval: settings.pingInterval)
  }

  // MARK: - Channel events

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.turn.attach(self)
    self.counted = true
    self.metrics.connectionOpened(.websocket)
    self.keepalive.start(
      context: context,
      isLive: { self.state == .open || self.state == .clientClosed },
      gone: { self.turn.inCallback { self.clientGone() } }
    )
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.clientGone()
    self.context = nil
    self.turn.detach()
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.clientGone()
    context.fireChannelInactive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = Self.unwrapInboundIn(data)
    self.keepalive.heard()
    self.turn.beginRead()
    switch frame.opcode {
    case .text:
      self.metrics.bytes(.websocket, .in, count: frame.length)
      guard self.state == .open else { return }
      self.receivedText(frame.unmaskedData)
    case .binary:
      if self.state == .open { self.failSession(GRPCErrors.binaryFrame, closeCode: 4400) }
    case .ping:
      if self.state != .closed {
        context.write(Self.wrapOutboundOut(WebSocketFrames.pong(echoing: frame.unmaskedData)), promise: nil)
        self.turn.flushSoon()
      }
    case .connectionClose:
      self.receivedClose()
    default:
      break  // pongs; continuations are reassembled by the aggregator
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    self.turn.endRead(always: false)
    context.fireChannelReadComplete()
  }

  func flushConnection() {
    self.context?.flush()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if let failure = WebSocketKeepalive.sessionError(error, maxMessageBytes: self.engine.maximumMessageBytes) {
      if self.state == .open { self.turn.inCallback { self.failSession(failure, closeCode: 4400) } }
      return
    }
    // Once the session is closing, what follows a decoder's error is dropped (see the single-RPC
    // session); otherwise the connection failed and nobody is left to tell.
    guard self.state == .open || self.state == .clientClosed else { return }
    self.logger.debug("WebSocket session ended with an I/O error", metadata: ["sluice.error": "\(error)"])
    self.clientGone()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is ChannelShouldQuiesceEvent {
      self.turn.inCallback { self.shuttingDown() }
    } else {
      context.fireUserInboundEventTriggered(event)
    }
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable {
      if self.readPending {
        self.readPending = false
        context.read()
      }
      self.turn.inCallback {
        for stream in Array(self.streams.values) { stream.resumeIfWaiting() }
      }
    }
    context.fireChannelWritabilityChanged()
  }

  func read(context: ChannelHandlerContext) {
    if context.channel.isWritable {
      context.read()
    } else {
      self.readPending = true
    }
  }

  // MARK: - For the streams

  /// Whether the socket takes more output now.
  var isSocketWritable: Bool { self.context?.channel.isWritable ?? false }

  /// A stream's frame `{"id":…,"<key>":<json>}`, as a text frame's payload (written straight into
  /// the buffer NIO's encoder frames in place).
  static func frame(_ id: MuxStreamID, _ key: String, _ json: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
    var buffer = WebSocketFrames.payloadBuffer(capacity: key.utf8.count + json.count + 40, allocator: allocator)
    buffer.writeString(#"{"id":"#)
    switch id {
    case .integer(let number): buffer.writeString(String(number))
    case .string: buffer.writeBytes(id.json.serializedBytes)
    }
    buffer.writeString(#",""#)
    buffer.writeString(key)
    buffer.writeString(#"":"#)
    buffer.writeBytes(json)
    buffer.writeInteger(UInt8(ascii: "}"))
    return buffer
  }

  /// A stream's frame, allocated on the session's channel.
  func frame(_ id: MuxStreamID, _ key: String, _ json: [UInt8]) -> ByteBuffer {
    Self.frame(id, key, json, allocator: self.context?.channel.allocator ?? ByteBufferAllocator())
  }

  /// Writes one text frame (a payload from `frame`), flushed with the turn.
  func write(_ payload: ByteBuffer) {
    guard let context = self.context, self.state == .open || self.state == .clientClosed else { return }
    self.metrics.bytes(.websocket, .out, count: payload.readableBytes)
    context.write(Self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: payload)), promise: nil)
    self.turn.flushSoon()
  }

  /// A stream ended: its last frame (`end`) goes out and its id is free again.
  func streamEnded(_ stream: MuxStream, frame: ByteBuffer) {
    guard self.streams[stream.id] === stream else { return }
    self.streams[stream.id] = nil
    self.write(frame)
    if self.state == .clientClosed, self.streams.isEmpty { self.closeAfterClient() }
  }

  /// A stream used up its response credit. Once the client's Close came nobody will grant more:
  /// unless it ends in this turn, it is cancelled.
  func creditRanOut(_ stream: MuxStream) {
    guard self.state == .clientClosed else { return }
    self.eventLoop.assumeIsolated().execute {
      guard self.streams[stream.id] === stream, stream.waitsForCredit else { return }
      self.turn.inCallback { stream.fail(GRPCErrors.muxCancelledWaitingForCredit) }
    }
  }

  // MARK: - Frames in

  private func receivedText(_ data: ByteBuffer) {
    let frame: MuxFrame
    do throws(RPCError) {
      frame = try MuxFrame.parse(
        try self.bridge.parse(data.readableBytesView),
        maxMetadataBytes: self.settings.maxMetadataBytes
      )
    } catch {
      return self.failSession(error, closeCode: 4400)
    }
    switch frame {
    case .ping(let value):
      let pong = JSONValue.object(["pong": value]).serializedBytes
      self.write(WebSocketFrames.text(pong, allocator: self.context?.channel.allocator ?? ByteBufferAllocator()).data)
    case .stream(let id, let frame):
      if frame.starts {
        guard self.streams[id] == nil else {
          return self.failSession(GRPCErrors.muxDuplicateID(id), closeCode: 4409)
        }
        self.start(id, frame)
        return
      }
      guard let stream = self.streams[id] else { return }  // late: it raced with the stream's end
      if let problem = frame.problem { return stream.fail(problem) }
      if frame.cancel { return stream.fail(GRPCErrors.muxCancelledByClient) }
      if let credit = frame.credit { stream.granted(credit) }
      if let message = frame.message {
        do throws(RPCError) {
          stream.received(try self.bridge.encodeRequest(message, for: stream.method))
        } catch {
          return stream.fail(error)
        }
      }
      if frame.end { stream.halfClose() }
    }
  }

  /// A `start`: the stream opens (routed, admitted and authenticated by the engine, with the
  /// handshake's metadata and its own) or ends at once with why it cannot.
  private func start(_ id: MuxStreamID, _ frame: MuxFrame.Stream) {
    func refuse(_ error: RPCError) {
      self.write(self.frame(id, "end", JSONValue.object(StatusJSON.status(error, trailers: [:])).serializedBytes))
    }
    guard let path = frame.start, frame.problem == nil else {
      return refuse(frame.problem ?? GRPCErrors.muxInvalidMember("start", "a method path string"))
    }
    if frame.cancel { return refuse(GRPCErrors.muxCancelledByClient) }
    guard self.streams.count < self.settings.maxStreamsPerSession else {
      return refuse(GRPCErrors.muxTooManyStreams(limit: self.settings.maxStreamsPerSession))
    }
    let method: SluiceCodec.MethodDescriptor
    let message: [UInt8]?
    do throws(RPCError) {
      method = try self.bridge.method(path: path)
      message = try frame.message.map { value throws(RPCError) in try self.bridge.encodeRequest(value, for: method) }
    } catch {
      return refuse(error)
    }
    let stream = MuxStream(id: id, method: method, credit: frame.credit, session: self)
    var metadata = self.setup.metadata
    if let extra = frame.metadata { metadata.add(contentsOf: extra) }
    self.streams[id] = stream
    let refusal = stream.lifecycle.begin(
      self.engine,
      path: path,
      metadata: RequestMetadata.headers(metadata),
      timeout: frame.timeout ?? self.setup.timeout,
      origin: CallOrigin(
        peerAddress: self.context?.channel.remoteAddress,
        source: .headers(self.setup.headers, secure: self.settings.secure)
      ),
      transport: .websocket,
      responder: stream,
      expired: { [weak stream] in
        guard let stream else { return }
        self.turn.inCallback { stream.fail(GRPCErrors.deadlineExceeded) }
      }
    )
    if let refusal {
      self.streams[id] = nil
      return refuse(refusal)
    }
    guard let handler = stream.lifecycle.handler, let call = stream.lifecycle.call else { return }
    if let headers = CallLifecycle.start(handler, call, engine: self.engine), stream.lifecycle.isRunning {
      stream.writeHeaders(headers)
    }
    if let message { stream.received(message) }
    if frame.end { stream.halfClose() }
  }

  // MARK: - Session ends

  /// The client's Close: every open stream half-closes and finishes; one waiting for response
  /// credit is cancelled (nobody will grant it). The server closes once they have all ended; a
  /// Close that answers the server's ends the closing handshake.
  private func receivedClose() {
    switch self.state {
    case .open:
      self.state = .clientClosed
      for stream in Array(self.streams.values) {
        stream.halfClose()
        if stream.waitsForCredit { stream.fail(GRPCErrors.muxCancelledWaitingForCredit) }
      }
      if self.streams.isEmpty { self.closeAfterClient() }
    case .closing:
      self.state = .closed
      self.closeTimer?.cancel()
      guard let context = self.context else { return }
      if let closeWritten = self.closeWritten {
        context.flush()
        closeWritten.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
      } else {
        context.close(promise: nil)
      }
    case .clientClosed, .closed:
      break
    }
  }

  /// Every stream ended after the client's Close: Close 1000 (1001 in a shutdown), then TCP.
  private func closeAfterClient() {
    guard self.state == .clientClosed else { return }  // once: the last stream's end may have done it
    self.state = .closed
    self.keepalive.stop()
    guard let context = self.context else { return }
    let close = WebSocketFrames.close(code: self.finalCloseCode, reason: "", allocator: context.channel.allocator)
    context.writeAndFlush(Self.wrapOutboundOut(close)).assumeIsolated().whenComplete { _ in
      context.close(promise: nil)
    }
  }

  /// The session's framing broke (4400, 4409): every open stream ends with the error, then the
  /// server's Close.
  private func failSession(_ error: RPCError, closeCode: Int) {
    guard self.state == .open else { return }
    self.logger.debug(
      "Multiplexed WebSocket session failed",
      metadata: ["sluice.websocket.close": "\(closeCode)", "sluice.error": "\(error.message)"]
    )
    self.endAll(error)
    self.close(code: closeCode, reason: error.message)
  }

  /// A graceful shutdown began: every open stream ends with `UNAVAILABLE`, then Close 1001.
  private func shuttingDown() {
    guard self.state == .open || self.state == .clientClosed else { return }
    let clientClosed = self.state == .clientClosed
    self.finalCloseCode = 1001
    self.endAll(GRPCErrors.shuttingDown)
    guard !clientClosed else { return }  // the last stream's end closed the session
    self.close(code: 1001, reason: GRPCErrors.shuttingDown.message)
  }

  private func endAll(_ error: RPCError) {
    for stream in Array(self.streams.values) { stream.fail(error) }
  }

  /// Writes the server's Close and waits for the client's, at most the closing handshake's timeout.
  private func close(code: Int, reason: String) {
    guard let context = self.context else { return }
    self.state = .closing
    self.keepalive.stop()
    let close = WebSocketFrames.close(code: code, reason: reason, allocator: context.channel.allocator)
    self.closeWritten = context.write(Self.wrapOutboundOut(close))
    self.turn.flushSoon()
    self.closeTimer = context.eventLoop.assumeIsolated().scheduleTask(
      in: WebSocketSessionHandler.closeHandshakeTimeout
    ) {
      guard self.state == .closing else { return }
      self.state = .closed
      context.close(promise: nil)
    }
  }

  /// The connection went away (or stopped answering pings): every stream is stopped, silently.
  private func clientGone() {
    if self.state != .closed {
      self.state = .closed
      let streams = self.streams.values
      self.streams = [:]
      for stream in streams { stream.abandon() }
      self.context?.close(promise: nil)
    }
    self.closeTimer?.cancel()
    self.keepalive.stop()
    if self.counted {
      self.counted = false
      self.metrics.connectionClosed(.websocket)
    }
  }
}

extension MuxSessionHandler {
  /// What a handshake on `/` gives the session's streams: metadata from its headers (as a
  /// single-RPC handshake's) and the JSON output it asks for; or why it is refused (HTTP 401
  /// without a valid token under `--require-bearer`, 400 for a malformed header).
  static func setup(
    for head: HTTPRequestHead,
    bridge: JSONBridge,
    engine: RPCEngine,
    settings: WebSocketSessionHandler.Settings
  ) -> Result<Setup, RPCError> {
    do throws(RPCError) {
      let (metadata, timeout) = try WebSocketHandshake.metadata(head.headers, bearerCookie: settings.bearerCookie)
      if let refusal = engine.credentialRefusal(Array(metadata[stringValues: "authorization"])) {
        throw refusal
      }
      return .success(
        Setup(metadata: metadata, timeout: timeout, headers: head.headers, bridge: try bridge.forRequest(head.headers))
      )
    } catch {
      return .failure(error)
    }
  }

  /// The HTTP answer to a handshake on `/` that `setup` refuses (401 with `WWW-Authenticate`
  /// without a valid token, 400 for a malformed header), or nil for any other request.
  static func handshakeRefusal(
    _ head: HTTPRequestHead,
    bridge: JSONBridge,
    engine: RPCEngine,
    settings: WebSocketSessionHandler.Settings
  ) -> HTTPStatusResponse? {
    guard head.path == WebSocketHandshake.muxPath,
      head.headers["Upgrade"].contains(where: { $0.lowercased().contains("websocket") }),
      case .failure(let refusal) = Self.setup(for: head, bridge: bridge, engine: engine, settings: settings)
    else { return nil }
    var headers = HTTPHeaders()
    if refusal.code == .unauthenticated { headers.add(name: "WWW-Authenticate", value: "Bearer") }
    return HTTPStatusResponse(refusal.code.httpStatus, code: refusal.code, message: refusal.message, headers: headers)
  }
}

internal import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP2

/// One native-port connection: its bytes go through a server `HTTP2Session` (libnghttp2), and its
/// streams are `GRPCStream`s (native gRPC) or `HTTP2ExchangeStream`s (a protocol the
/// `ExchangeRouter` picks by content type: gRPC-Web), on the connection's event loop.
///
/// What this handler adds to the session: the stream table; the output drained once per loop turn
/// (`ConnectionTurn`) and only while the socket takes it; the streams told as their counted DATA
/// leaves (writability); `--body-timeout` for streams that wait for a request message; and
/// connection management: grpc-go's PING policy, the handshake timeout, idle and age limits,
/// keepalive PINGs, and the two-phase GOAWAY of a graceful shutdown.
final class GRPCServerConnection: ChannelDuplexHandler, TurnFlushing, HTTP2SessionDelegate {
  typealias InboundIn = ByteBuffer
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  /// The connection's HTTP/2 settings and its management (timers, PING policy, shutdown).
  struct Settings {
    var http2: HTTP2Session.Settings
    var management: HTTP2ConnectionManager.Configuration
  }

  let engine: RPCEngine
  let router: ExchangeRouter
  let eventLoop: any EventLoop
  /// Whether the connection is TLS.
  let isSecure: Bool
  let allocator: ByteBufferAllocator
  let remoteAddress: SocketAddress?
  /// The client's IP address as text, worked out at the first call that asks (a proxied call's
  /// `x-forwarded-for`): formatting it took `inet_ntop` and `sprintf` on every call.
  private(set) lazy var remoteIP: String? = self.remoteAddress?.ipAddress
  private let settings: Settings

  private var session: HTTP2Session?
  private var context: ChannelHandlerContext?
  private var streams: [Int32: any HTTP2ServerStream] = [:]
  /// Counted bytes nghttp2 pulled during one drain, told to the streams after it.
  private var pulled: [(any HTTP2ServerStream, Int)] = []
  let turn: ConnectionTurn
  private var closing = false

  private var manager: HTTP2ConnectionManager
  /// The manager's timers that are scheduled, by kind.
  private var timers: [HTTP2ConnectionManager.Timer: Scheduled<Void>] = [:]
  /// Streams that wait for a request message due within `--body-timeout` (some may have stopped
  /// waiting: pruned after each read), and the one timer that checks them.
  private var bodyWatch: [GRPCStream] = []
  private var bodyTimer: Scheduled<Void>?

  init(engine: RPCEngine, router: ExchangeRouter, channel: any Channel, secure: Bool, settings: Settings) {
    self.engine = engine
    self.router = router
    self.isSecure = secure
    self.eventLoop = channel.eventLoop
    self.allocator = channel.allocator
    self.settings = settings
    self.manager = HTTP2ConnectionManager(configuration: settings.management, now: .now())
    self.remoteAddress = channel.remoteAddress
    self.turn = ConnectionTurn(eventLoop: channel.eventLoop)
  }

  // MARK: - What the streams ask of their connection

  func sendHeaders(_ headers: HPACKHeaders, endStream: Bool, on stream: some HTTP2ServerStream) {
    self.session?.sendHeaders(headers, endStream: endStream, on: Int32(stream.id))
    self.manager.sentFrames()
  }

  func sendData(_ data: ByteBuffer, counted: Bool, on stream: some HTTP2ServerStream) {
    self.session?.sendData(data, counted: counted, on: Int32(stream.id))
    self.manager.sentFrames()
  }

  /// Ends the stream with END_STREAM on DATA, once the DATA queued before it is out.
  func endStream(on stream: some HTTP2ServerStream) {
    self.session?.sendData(ByteBuffer(), counted: false, on: Int32(stream.id))
    self.session?.end(Int32(stream.id))
    self.manager.sentFrames()
  }

  func sendReset(_ code: HTTP2ErrorCode, on stream: some HTTP2ServerStream) {
    guard let session = self.session else { return }
    let id = Int32(stream.id)
    // A stream the client has ended too is closed: nothing to reset.
    guard !session.isRemoteClosed(id) else { return }
    session.reset(id, code: code)
    self.flushSoon()
  }

  func consumed(_ bytes: Int, on stream: some HTTP2ServerStream) {
    self.session?.consumed(bytes, on: Int32(stream.id))
    self.flushSoon()
  }

  /// `stream` waits for a request message due within `--body-timeout` (`awaitingSince`).
  func watchBody(_ stream: GRPCStream) {
    self.bodyWatch.append(stream)
    if self.bodyTimer == nil, let since = stream.awaitingSince {
      self.scheduleBodyCheck(at: since + TimeAmount(self.engine.bodyTimeout))
    }
  }

  private func scheduleBodyCheck(at deadline: NIODeadline) {
    self.bodyTimer = self.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
      self.bodyTimer = nil
      let now = NIODeadline.now()
      self.inCallback {
        let watched = self.bodyWatch
        self.bodyWatch.removeAll()
        for stream in watched where stream.checkBody(at: now) { self.bodyWatch.append(stream) }
      }
      if self.bodyTimer == nil, let earliest = self.bodyWatch.lazy.compactMap(\.awaitingSince).min() {
        self.scheduleBodyCheck(at: earliest + TimeAmount(self.engine.bodyTimeout))
      }
    }
  }

  func writeAtFlush(_ stream: any TurnBatched) {
    self.turn.writeAtFlush(stream)
  }

  func flushSoon() {
    self.turn.flushSoon()
  }

  func inCallback(_ body: () -> Void) {
    self.turn.inCallback(body)
  }

  // MARK: - Channel

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.turn.attach(self)
    do {
      self.session = try HTTP2Session(
        role: .server, settings: self.settings.http2, delegate: self, allocator: self.allocator)
    } catch {
      context.close(promise: nil)
      return
    }
    self.perform(self.manager.start(now: .now()))
    if context.channel.isActive { self.flushSoon() }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.closeAll()
    for timer in self.timers.values { timer.cancel() }
    self.timers.removeAll()
    self.bodyTimer?.cancel()
    self.session?.close()
    self.session = nil
    self.context = nil
    self.turn.detach()
  }

  func channelActive(context: ChannelHandlerContext) {
    self.flushSoon()
    context.fireChannelActive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard let session = self.session, !self.closing else { return }
    self.turn.beginRead()
    if let error = session.receive(Self.unwrapInboundIn(data)) {
      // A connection error: nghttp2 has queued its GOAWAY; send it, then close.
      self.engine.logger.debug("gRPC connection error", metadata: ["sluice.error": "\(error)"])
      self.closing = true
      self.turn.flushNow(always: true)
      context.close(promise: nil)
    } else {
      self.manager.read(at: .now(), frames: session.framesReceived > 0)
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    if !self.bodyWatch.isEmpty {
      // Most streams stop waiting within the read that began them (a unary request whole).
      self.bodyWatch.removeAll { $0.awaitingSince == nil }
    }
    // nghttp2 may have frames of its own to send (SETTINGS and PING acknowledgements).
    self.turn.endRead(always: true)
    context.fireChannelReadComplete()
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable {
      self.turn.flushSoon()
      self.inCallback {
        for stream in self.streams.values { stream.connectionBecameWritable() }
      }
    }
    context.fireChannelWritabilityChanged()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is ChannelShouldQuiesceEvent {
      self.perform(self.manager.drain(grace: nil, now: .now()))
      self.inCallback {
        for stream in self.streams.values { stream.quiesce() }
      }
    }
    context.fireUserInboundEventTriggered(event)
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.closeAll()
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    self.engine.logger.debug("gRPC connection error", metadata: ["sluice.error": "\(error)"])
    self.close()
  }

  // MARK: - Sending

  /// Drains what the session has to send into one buffer and flushes it, while the socket takes
  /// more (the streams' batched DATA went into the session just before, see `ConnectionTurn`).
  func flushConnection() {
    guard let session = self.session, let context = self.context else { return }
    guard context.channel.isWritable || self.closing else { return }
    if let out = session.drain() {
      context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
    }
    if !self.pulled.isEmpty {
      let pulled = self.pulled
      self.pulled.removeAll(keepingCapacity: true)
      self.inCallback {
        for (stream, bytes) in pulled { stream.wrote(bytes) }
      }
    }
    if session.isFinished {
      self.close()
    } else if self.manager.sentFinalGoAway, self.streams.isEmpty, !session.wantsWrite {
      // The final GOAWAY is out and no stream is left.
      self.close()
    }
  }

  private func close() {
    self.closing = true
    self.context?.close(promise: nil)
  }

  /// The connection is gone: every open call is cancelled.
  private func closeAll() {
    let streams = self.streams.values
    self.streams.removeAll()
    self.bodyWatch.removeAll()
    self.turn.reset()
    for stream in streams { stream.reset() }
  }

  // MARK: - Connection management

  /// Carries out what the connection manager decided.
  private func perform(_ actions: [HTTP2ConnectionManager.Action]) {
    for action in actions {
      switch action {
      case .schedule(let timer, let deadline):
        self.timers[timer]?.cancel()
        self.timers[timer] = self.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
          self.timers[timer] = nil
          self.perform(self.manager.fired(timer, now: .now()))
        }
      case .sendShutdownNotice:
        self.session?.shutdownNotice()
        self.flushSoon()
      case .sendGoAway:
        self.session?.goAway(.noError)
        self.turn.flushNow(always: true)
      case .sendPing:
        self.session?.ping()
        self.flushSoon()
      case .sendTooManyPings:
        self.session?.goAway(.enhanceYourCalm, reason: "too_many_pings")
        self.closing = true
        self.turn.flushNow(always: true)
        self.context?.close(promise: nil)
      case .close:
        self.close()
      }
    }
  }

  /// grpc-go's PING policy; on a third strike, GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
  func http2Ping() {
    if self.manager.receivedPing(at: .now()) { self.perform([.sendTooManyPings]) }
  }

  // MARK: - Receiving (the session's delegate)

  func http2Headers(_ headers: HPACKHeaders, endStream: Bool, stream id: Int32) {
    if let stream = self.streams[id] {
      stream.receivedHeaders(headers, endStream: endStream)
    } else {
      let stream = self.makeStream(id: HTTP2StreamID(id), headers: headers)
      self.streams[id] = stream
      self.manager.streamOpened()
      stream.receivedHeaders(headers, endStream: endStream)
    }
  }

  /// Native gRPC, unless the request is one the `ExchangeRouter` routes (gRPC-Web and Connect by
  /// content type, REST by method and path); anything else is refused by `GRPCStream` with 415, as
  /// gRPC's PROTOCOL-HTTP2 has it.
  private func makeStream(id: HTTP2StreamID, headers: HPACKHeaders) -> any HTTP2ServerStream {
    if self.router.routes(http2: headers) {
      return HTTP2ExchangeStream(id: id, connection: self, router: self.router)
    }
    return GRPCStream(id: id, connection: self, engine: self.engine)
  }

  func http2Data(_ bytes: ByteBuffer, stream id: Int32) -> Bool {
    guard let stream = self.streams[id] else { return false }
    stream.receivedData(bytes, endStream: false, length: bytes.readableBytes)
    return true
  }

  func http2DataEnded(stream id: Int32) {
    self.streams[id]?.receivedData(ByteBuffer(), endStream: true, length: 0)
  }

  /// Past `--grpc-max-header-list-size`: nghttp2 resets the stream.
  func http2HeadersRefused(stream: Int32) {}

  func http2GoAway() {}

  func http2Sent(_ bytes: Int, stream id: Int32) {
    if let stream = self.streams[id] { self.pulled.append((stream, bytes)) }
  }

  func http2StreamClosed(_ id: Int32, errorCode: UInt32) {
    guard let stream = self.streams.removeValue(forKey: id) else { return }
    self.manager.streamClosed(at: .now())
    stream.reset()
  }
}

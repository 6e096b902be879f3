internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP1
internal import NIOWebSocket
internal import SluiceCodec

/// One WebSocket session carrying one RPC, as a channel handler on the connection's event loop:
/// the last handler of the pipeline after the upgrade. It translates the client's text frames
/// to protobuf and hands them to the method's `RPCHandler` (routed, limited and authenticated by
/// the `RPCEngine`, like a native call), translates what the handler sends back to JSON frames,
/// and leaves every protocol decision to `WebSocketSessionStateMachine`. No task, no lock, no
/// hop: an idle session is this object, its pipeline and one keepalive timer.
///
/// Backpressure: the handler is writable while the channel is (`--send-timeout`'s watermarks and
/// `TCP_NOTSENT_LOWAT` bound what waits for a slow reader); while it is not, the session stops
/// reading, so a client that floods requests without reading is held back by TCP.
final class WebSocketSessionHandler: ChannelDuplexHandler, CallResponder, TurnFlushing {
  typealias InboundIn = WebSocketFrame
  typealias OutboundIn = WebSocketFrame
  typealias OutboundOut = WebSocketFrame

  /// How long the server waits for the client's Close after sending its own.
  static let closeHandshakeTimeout = TimeAmount.seconds(2)

  /// What every session on the port shares, from the configuration's `webSocket`, `auth`,
  /// `origins`, `http` and `listener` parts.
  struct Settings: Sendable {
    /// Keepalive: a ping after this much quiet; nil for none.
    var pingInterval: TimeAmount?
    /// The most bytes a `$metadata` frame may carry (the port's header limit).
    var maxMetadataBytes: Int
    /// Whether the port is TLS (for a proxied call's `x-forwarded-*`).
    var secure: Bool
    /// `--bearer-cookie`, only when an Origin allow list guards it.
    var bearerCookie: String?
    /// `--max-streams-per-session`: the most open streams of one multiplexed session.
    var maxStreamsPerSession: Int

    init(
      _ webSocket: GatewayConfiguration.WebSocket,
      auth: GatewayConfiguration.Auth,
      origins: GatewayConfiguration.Origins,
      maxMetadataBytes: Int,
      secure: Bool
    ) {
      self.pingInterval = webSocket.pingInterval.map { TimeAmount($0) }
      self.maxMetadataBytes = maxMetadataBytes
      self.secure = secure
      self.bearerCookie = origins.hasAllowList ? auth.bearerCookie : nil
      self.maxStreamsPerSession = webSocket.maxStreamsPerSession
    }
  }

  /// What the handshake decided: the method, and the metadata and deadline from its headers; or
  /// the error that ends the session at once.
  struct Setup {
    var method: SluiceCodec.MethodDescriptor
    var metadata: Metadata
    var timeout: Duration?
    /// The handshake's headers (`Host` and `X-Forwarded-For` for a proxied call).
    var headers: HTTPHeaders
    /// The bridge, writing JSON as the handshake's `Sluice-JSON-Output` asks.
    var bridge: JSONBridge
  }

  let eventLoop: any EventLoop
  private let engine: RPCEngine
  private let bridge: JSONBridge
  private let path: String
  /// Why the handshake's request cannot be served (it ends the session at once), if it cannot.
  private let setupError: RPCError?
  /// The method's descriptors, for the JSON translation; nil when the setup failed.
  private let method: SluiceCodec.MethodDescriptor?
  private let maxMetadataBytes: Int
  /// The handshake's headers, and whether the connection is TLS (for a proxied call's
  /// `x-forwarded-*`).
  private let handshakeHeaders: HTTPHeaders
  private let secure: Bool
  private let metrics: GatewayMetrics
  private let logger: Logger

  private var machine: WebSocketSessionStateMachine
  private var context: ChannelHandlerContext?
  /// The RPC's admission, handler, deadline and counts, from its start to `rpcEnded`.
  private var lifecycle = CallLifecycle()
  private var metadata: Metadata
  private var timeout: Duration?
  private var closeTimer: Scheduled<Void>?
  /// The write of the server's Close: TCP closes after it, never over it.
  private var closeWritten: EventLoopFuture<Void>?
  private let keepalive: WebSocketKeepalive
  /// A `read` held back while the channel is not writable or the handler holds requests.
  private var readPending = false
  /// The handler holds requests back (`holdRequests`).
  private var requestsHeld = false
  /// The response headers (`$headers`, or the first message without) went out.
  private var headersSent = false
  /// Writes are flushed once per read, callback or loop turn.
  let turn: ConnectionTurn
  private var counted = false

  init(
    eventLoop: any EventLoop,
    engine: RPCEngine,
    bridge: JSONBridge,
    path: String,
    setup: Result<Setup, RPCError>,
    settings: Settings,
    metrics: GatewayMetrics,
    logger: Logger
  ) {
    self.eventLoop = eventLoop
    self.turn = ConnectionTurn(eventLoop: eventLoop)
    self.engine = engine
    self.bridge = (try? setup.get())?.bridge ?? bridge
    self.path = path
    self.keepalive = WebSocketKeepalive(interval: settings.pingInterval)
    self.maxMetadataBytes = settings.maxMetadataBytes
    self.secure = settings.secure
    self.metrics = metrics
    self.logger = logger
    let ready = try? setup.get()
    if case .failure(let error) = setup { self.setupError = error } else { self.setupError = nil }
    self.method = ready?.method
    self.machine = WebSocketSessionStateMachine(path: path, takesOneRequest: ready?.method.takesOneRequest ?? true)
    self.metadata = ready?.metadata ?? [:]
    self.timeout = ready?.timeout
    self.handshakeHeaders = ready?.headers ?? [:]
  }

  // MARK: - Channel events

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.turn.attach(self)
    self.counted = true
    self.metrics.connectionOpened(.websocket)
    if let error = self.setupError {
      self.turn.inCallback { self.perform(self.machine.receivedInvalid(error)) }
      return
    }
    self.scheduleKeepalive()
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
      guard self.machine.state == .awaitingFirstFrame || self.machine.isRunning else { return }
      self.receivedText(frame.unmaskedData)
    case .binary:
      self.perform(self.machine.receivedInvalid(GRPCErrors.binaryFrame))
    case .ping:
      if self.machine.state != .closed {
        context.write(Self.wrapOutboundOut(WebSocketFrames.pong(echoing: frame.unmaskedData)), promise: nil)
        self.turn.flushSoon()
      }
    case .connectionClose:
      self.perform(self.machine.receivedClose())
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
      self.inTurn { self.machine.receivedInvalid(failure) }
      return
    }
    // Once the session is ending, what follows a decoder's error (the rest of a frame it gave up
    // on) is dropped: closing over unread bytes would reset the connection before the client has
    // read `$end`. Otherwise the connection failed (a reset, a TLS error): nobody is left to tell.
    guard self.machine.state == .awaitingFirstFrame || self.machine.isRunning else { return }
    self.logger.debug("WebSocket session ended with an I/O error", metadata: ["sluice.error": "\(error)"])
    self.clientGone()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is ChannelShouldQuiesceEvent {
      self.inTurn { self.machine.shuttingDown() }
    } else {
      context.fireUserInboundEventTriggered(event)
    }
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable {
      if self.readPending, !self.requestsHeld {
        self.readPending = false
        context.read()
      }
      if self.machine.isRunning, let handler = self.lifecycle.handler, let call = self.lifecycle.call {
        self.turn.inCallback { handler.becameWritable(call) }
      }
    }
    context.fireChannelWritabilityChanged()
  }

  func read(context: ChannelHandlerContext) {
    if context.channel.isWritable, !self.requestsHeld {
      context.read()
    } else {
      self.readPending = true
    }
  }

  // MARK: - CallResponder

  var isWritable: Bool { self.context?.channel.isWritable ?? false }

  var outputTurn: ConnectionTurn? { self.turn }

  var messageCompressed: Bool { false }

  func send(serialized message: [UInt8], compressed: Bool) {
    guard self.machine.isRunning, let context = self.context, let method = self.method else { return }
    let json: [UInt8]
    do {
      json = try self.bridge.decodeResponse(message, for: method)
    } catch {
      self.inTurn { self.machine.rpcFailed(error) }
      return
    }
    self.lifecycle.sending()
    self.headersSent = true
    self.write(json, context: context)
  }

  func sendHeaders(_ metadata: HPACKHeaders) {
    guard self.machine.isRunning, !self.headersSent, let call = self.lifecycle.call else { return }
    self.headersSent = true
    if let frame = StatusJSON.headersFrame(self.engine.responseMetadata(metadata, for: call)) { self.write(frame) }
  }

  func holdRequests(_ hold: Bool) {
    self.requestsHeld = hold
    guard !hold, self.readPending, let context = self.context, context.channel.isWritable else { return }
    self.readPending = false
    context.read()
  }

  func finish(_ error: RPCError?, trailers: HPACKHeaders) {
    guard self.machine.isRunning else { return }
    let action = self.machine.rpcFinished(error)
    self.perform(action, trailers: trailers)
    self.turn.flushSoon()
  }

  // MARK: - Frames in

  private func receivedText(_ data: ByteBuffer) {
    guard let method = self.method else { return }
    do throws(RPCError) {
      let value = try self.bridge.parse(data.readableBytesView)
      if let object = JSONBridge.controlFrame(value) {
        let (control, pings) = try WebSocketSessionStateMachine.ControlFrame.parse(
          object,
          maxMetadataBytes: self.maxMetadataBytes
        )
        for ping in pings { self.write(JSONValue.object(["$pong": ping]).serializedBytes) }
        if self.machine.state == .awaitingFirstFrame {
          if let extra = control.metadata { self.metadata.add(contentsOf: extra) }
          self.timeout = control.timeout ?? self.timeout
        }
        self.perform(self.machine.receivedControl(control))
      } else {
        let message = try self.bridge.encodeRequest(value, for: method)
        self.perform(self.machine.receivedMessage(message))
      }
    } catch {
      self.perform(self.machine.receivedInvalid(error))
    }
  }

  // MARK: - Actions

  private func perform(_ action: WebSocketSessionStateMachine.Action, trailers: HPACKHeaders = [:]) {
    switch action {
    case .none:
      break
    case .run(let start, let message, let end):
      if start { self.startRPC() }
      if let message, self.machine.isRunning, let handler = self.lifecycle.handler, let call = self.lifecycle.call {
        self.lifecycle.receiving()
        var buffer = self.context?.channel.allocator.buffer(capacity: message.count) ?? ByteBuffer()
        buffer.writeBytes(message)
        handler.received(buffer, call)
      }
      if end, self.machine.isRunning, let handler = self.lifecycle.handler, let call = self.lifecycle.call {
        handler.receivedEnd(call)
      }
    case .end(let ending):
      let handler = self.rpcEnded(code: ending.error.map { "\($0.code)" } ?? "ok")
      if ending.stopsHandler { handler?.stopped() }
      self.logger.debug(
        "WebSocket RPC ended",
        metadata: ["sluice.rpc.method": "\(self.path)", "sluice.websocket.close": "\(ending.closeCode)"]
      )
      guard let context = self.context else { return }
      self.write(StatusJSON.endFrame(ending.error, trailers: trailers, bridge: self.bridge), context: context)
      let close = WebSocketFrames.close(
        code: ending.closeCode,
        reason: ending.error?.message ?? "",
        allocator: context.channel.allocator
      )
      self.keepalive.stop()
      if ending.closesNow {
        context.writeAndFlush(Self.wrapOutboundOut(close)).assumeIsolated().whenComplete { _ in
          context.close(promise: nil)
        }
      } else {
        self.closeWritten = context.write(Self.wrapOutboundOut(close))
        self.turn.flushSoon()
        self.closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.closeHandshakeTimeout) {
          self.perform(self.machine.closeTimedOut())
        }
      }
    case .close(let stopsHandler):
      let handler = self.rpcEnded(code: "cancelled")
      if stopsHandler { handler?.stopped() }
      self.closeTimer?.cancel()
      self.keepalive.stop()
      guard let context = self.context else { return }
      if let closeWritten = self.closeWritten, !stopsHandler {
        // The client's Close can come in the read that also ended the RPC, before the turn's
        // flush: `$end` and Close go out first.
        context.flush()
        closeWritten.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
      } else {
        context.close(promise: nil)
      }
    }
  }

  /// Starts the RPC: the engine routes and admits it (or refuses it, which ends the session with
  /// the refusal's status), the handler is made, the deadline set and `$headers` sent.
  private func startRPC() {
    let refusal = self.lifecycle.begin(
      self.engine,
      path: self.path,
      metadata: RequestMetadata.headers(self.metadata),
      timeout: self.timeout,
      origin: CallOrigin(
        peerAddress: self.context?.channel.remoteAddress,
        source: .headers(self.handshakeHeaders, secure: self.secure)
      ),
      transport: .websocket,
      responder: self,
      expired: { self.inTurn { self.machine.rpcFailed(GRPCErrors.deadlineExceeded) } }
    )
    if let refusal {
      self.perform(self.machine.rpcFinished(refusal))
      return
    }
    guard let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
    if let metadata = CallLifecycle.start(handler, call, engine: self.engine) {
      self.headersSent = true
      if let frame = StatusJSON.headersFrame(metadata) { self.write(frame) }
    }
  }

  /// Bookkeeping once the RPC is over, whichever way it ended; returns the handler it had.
  private func rpcEnded(code: String) -> (any RPCHandler)? {
    self.lifecycle.end(self.engine, code: code)
  }

  private func clientGone() {
    if self.machine.state != .closed { self.perform(self.machine.clientGone()) }
    self.closeTimer?.cancel()
    self.keepalive.stop()
    if self.counted {
      self.counted = false
      self.metrics.connectionClosed(.websocket)
    }
  }

  // MARK: - Keepalive

  private func scheduleKeepalive() {
    guard let context = self.context else { return }
    self.keepalive.start(
      context: context,
      isLive: { self.machine.isRunning || self.machine.state == .awaitingFirstFrame },
      gone: { self.inTurn { self.machine.clientGone() } }
    )
  }

  // MARK: - Writing

  /// One JSON document as a text frame, flushed with the turn.
  private func write(_ json: [UInt8]) {
    guard let context = self.context else { return }
    self.write(json, context: context)
  }

  private func write(_ json: [UInt8], context: ChannelHandlerContext) {
    context.write(Self.wrapOutboundOut(WebSocketFrames.text(json, allocator: context.channel.allocator)), promise: nil)
    self.metrics.bytes(.websocket, .out, count: json.count)
    self.turn.flushSoon()
  }

  /// Runs a state-machine event from outside a read (a timer, the pipeline) and flushes what it
  /// wrote.
  private func inTurn(_ event: () -> WebSocketSessionStateMachine.Action) {
    self.turn.inCallback { self.perform(event()) }
  }
}

extension WebSocketSessionHandler {
  /// What a handshake asks for: the method at its path, and request metadata from its headers
  /// (`Authorization`, `grpc-metadata-*`, `grpc-timeout`), a `bearer.` subprotocol, or the
  /// `--bearer-cookie` when an Origin allow-list guards the cookie; or the error that ends the
  /// session at once (an unknown method, a malformed header).
  static func setup(
    for head: HTTPRequestHead,
    bridge: JSONBridge,
    engine: RPCEngine,
    settings: Settings
  ) -> Result<Setup, RPCError> {
    do throws(RPCError) {
      let (metadata, timeout) = try WebSocketHandshake.metadata(head.headers, bearerCookie: settings.bearerCookie)
      let method: SluiceCodec.MethodDescriptor
      do throws(RPCError) {
        method = try bridge.method(path: head.path)
      } catch {
        // Without a valid token an unknown path answers as a real one would (no enumeration).
        throw engine.credentialRefusal(Array(metadata[stringValues: "authorization"])) ?? error
      }
      let writing: JSONBridge
      do throws(RPCError) {
        writing = try bridge.forRequest(head.headers)
      } catch {
        throw engine.credentialRefusal(Array(metadata[stringValues: "authorization"])) ?? error
      }
      return .success(
        Setup(
          method: method,
          metadata: metadata,
          timeout: timeout,
          headers: head.headers,
          bridge: writing
        )
      )
    } catch {
      return .failure(error)
    }
  }
}

internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP2

/// Serves one gRPC call on one HTTP/2 stream channel, on the connection's event loop: feeds the
/// stream's frames to a `GRPCServerStreamState`, runs the routed method's `RPCHandler`, and
/// writes what they decide.
///
/// Output is batched: response messages go into one buffer that is written as a DATA frame when
/// it reaches 16 KiB, when the call ends, or once the current loop turn's work is done (after the
/// connection's reads, or after the callback that produced them), and flushed once then.
/// Backpressure is the stream's writability: while the stream cannot take more output (HTTP/2
/// flow control, a slow reader) the handler stops reading, so a client flooding requests is held
/// by flow control, and a producer waits for `becameWritable`.
final class GRPCStreamHandler: ChannelDuplexHandler, CallResponder {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias OutboundIn = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  /// The largest DATA frame the batching builds (HTTP/2's default SETTINGS_MAX_FRAME_SIZE).
  static let batchBytes = 16_384

  private let port: GRPCPortContext
  private var state: GRPCServerStreamState
  private var context: ChannelHandlerContext?
  private var method: RPCMethod?
  private var handler: (any RPCHandler)?
  private var call: ServerCall?
  private var ticket: RPCMonitor.Ticket?
  private var holdsLimiterSlot = false
  private var deadline: Scheduled<Void>?
  private var messagesIn = 0
  private var messagesOut = 0

  /// Response messages not yet written as a DATA frame.
  private var pending: ByteBuffer?
  /// Inside the connection's read (flush at `channelReadComplete`) or an engine callback (flush
  /// when it returns).
  private var inTurn = false
  private var flushNeeded = false
  private var flushScheduled = false
  /// A `read()` held back while the stream was not writable.
  private var readHeld = false

  let eventLoop: any EventLoop

  /// Tells the connection's PING policy that HEADERS or DATA went out.
  private let activity: ConnectionActivity

  init(port: GRPCPortContext, eventLoop: any EventLoop, activity: ConnectionActivity) {
    self.port = port
    self.activity = activity
    self.eventLoop = eventLoop
    self.state = GRPCServerStreamState(maximumMessageBytes: port.maximumMessageBytes)
  }

  // MARK: - CallResponder

  var isWritable: Bool {
    self.context?.channel.isWritable ?? false
  }

  private(set) var messageCompressed = false

  func send(serialized message: [UInt8], compressed: Bool) {
    guard let context = self.context else { return }
    guard message.count <= self.port.maximumMessageBytes else {
      self.finish(GRPCErrors.messageTooLarge(message.count, limit: self.port.maximumMessageBytes, received: false))
      return
    }
    let (headers, open) = self.state.sendingMessage()
    guard open else { return }
    if let headers { self.writeHeaders(headers, endStream: false, context: context) }
    var gzipped: ByteBuffer?
    if compressed, self.state.compressesResponses {
      gzipped = GzipMessage.deflate(message, allocator: context.channel.allocator)
    }
    var pending = self.pending ?? context.channel.allocator.buffer(capacity: Self.batchBytes)
    self.pending = nil  // unique while written to: no copy
    if var gzipped {
      pending.writeInteger(UInt8(1))
      pending.writeInteger(UInt32(truncatingIfNeeded: gzipped.readableBytes))
      pending.writeBuffer(&gzipped)
    } else {
      pending.writeInteger(UInt8(0))
      pending.writeInteger(UInt32(truncatingIfNeeded: message.count))
      pending.writeBytes(message)
    }
    self.pending = pending
    self.messagesOut += 1
    if pending.readableBytes >= Self.batchBytes { self.writePending(context) }
    self.flushSoon(context)
  }

  func finish(_ error: RPCError?, trailers: HPACKHeaders) {
    guard let context = self.context, let ending = self.state.finishing(error, trailers: trailers) else { return }
    self.writePending(context)
    self.write(ending, context: context)
    self.ended(code: error.map { "\($0.code)" } ?? "ok")
  }

  // MARK: - Inbound

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.context = nil
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    self.inTurn = true
    switch Self.unwrapInboundIn(data) {
    case .headers(let headers):
      self.received(headers.headers, endStream: headers.endStream, context: context)
    case .data(let data):
      guard case .byteBuffer(let bytes) = data.data else { return }
      self.deliver(self.state.receivedData(bytes, endStream: data.endStream))
    case .rstStream:
      self.stop(GRPCErrors.cancelled, write: false)
    default:
      break
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    self.inTurn = false
    self.flushNow(context)
    context.fireChannelReadComplete()
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    guard context.channel.isWritable else { return }
    if self.readHeld {
      self.readHeld = false
      context.read()
    }
    if self.state.isOpen, let handler = self.handler, let call = self.call {
      self.inCallback(context) { handler.becameWritable(call) }
    }
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is ChannelShouldQuiesceEvent, self.state.isOpen, let method = self.method, method.kind != .unary {
      // A graceful shutdown: streams end with UNAVAILABLE now, so that clients see a status and
      // retry elsewhere; unary calls are left to finish.
      self.inCallback(context) { self.stop(GRPCErrors.shuttingDown, write: true) }
    }
    context.fireUserInboundEventTriggered(event)
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.stop(GRPCErrors.cancelled, write: false)
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    self.port.logger.debug("gRPC stream error", metadata: ["sluice.error": "\(error)"])
    self.stop(GRPCErrors.cancelled, write: false)
    context.close(promise: nil)
  }

  // MARK: - Outbound

  func read(context: ChannelHandlerContext) {
    if self.state.isOpen, !context.channel.isWritable {
      self.readHeld = true
    } else {
      context.read()
    }
  }

  // MARK: - The call

  private func received(_ headers: HPACKHeaders, endStream: Bool, context: ChannelHandlerContext) {
    switch self.state.receivedHeaders(headers, endStream: endStream) {
    case .trailers(let action):
      self.deliver(action)
    case .refuse(let ending, let error):
      self.port.logger.debug(
        "Refused a malformed gRPC request",
        metadata: ["sluice.rpc.method": "\(headers.first(name: ":path") ?? "")", "sluice.error": "\(error)"]
      )
      self.write(ending, context: context)
    case .start(let head):
      guard let method = self.port.router.method(path: head.path) else {
        self.finish(GRPCErrors.unknownMethod(head.path))
        return
      }
      self.method = method
      self.ticket = self.port.monitor.begin(method: method.name, transport: .grpc)
      guard self.port.limiter.acquire() else {
        self.finish(GRPCErrors.tooManyRPCs(limit: self.port.limiter.limit))
        return
      }
      self.holdsLimiterSlot = true
      if let authenticator = self.port.authenticator {
        guard let authorization = headers.first(name: "authorization") else {
          self.finish(GRPCErrors.missingCredentials)
          return
        }
        guard authenticator.allows(authorization: authorization) else {
          self.finish(GRPCErrors.invalidCredentials)
          return
        }
      }
      if let timeout = head.timeout {
        self.deadline = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
          self.inCallback(context) { self.stop(GRPCErrors.deadlineExceeded, write: true) }
        }
      }
      let handler = method.makeHandler()
      let call = ServerCall(responder: self, metadata: headers)
      self.handler = handler
      self.call = call
      self.state.compressesResponses = method.compressesResponses && GRPCServerStreamState.acceptsGzip(headers)
      // The response headers go out with the first flush, before any message: clients such as
      // grpc-swift's wait for them before they send their first request message.
      if var responseHeaders = self.state.sendingMessage().headers {
        responseHeaders.add(contentsOf: handler.initialMetadata(call))
        self.writeHeaders(responseHeaders, endStream: false, context: context)
        self.flushSoon(context)
      }
      if endStream { self.deliver(.deliver([], ended: true)) }
    }
  }

  /// Hands messages and the request's end to the handler, while the call stays open.
  private func deliver(_ action: GRPCServerStreamState.RequestAction) {
    switch action {
    case .deliver(let messages, let ended):
      guard let handler = self.handler, let call = self.call else { return }
      for message in messages {
        guard self.state.isOpen else { return }
        self.messagesIn += 1
        self.messageCompressed = message.compressed
        handler.received(message.bytes, call)
      }
      if ended, self.state.isOpen { handler.receivedEnd(call) }
    case .fail(let error):
      self.stop(error, write: true)
    case .ignore:
      break
    }
  }

  /// Ends the call without its handler: with `error` written as its status when `write`, or
  /// (a reset, a closed stream) counted as `error` only.
  private func stop(_ error: RPCError, write: Bool) {
    guard self.state.isOpen else { return }
    let handler = self.handler
    if write {
      self.finish(error)
    } else {
      _ = self.state.streamClosed()
      self.ended(code: "\(error.code)")
    }
    handler?.stopped()
  }

  /// Bookkeeping once a call is over, whichever way it ended.
  private func ended(code: String) {
    self.deadline?.cancel()
    self.deadline = nil
    self.handler = nil
    self.call = nil
    if self.holdsLimiterSlot {
      self.holdsLimiterSlot = false
      self.port.limiter.release()
    }
    if let ticket = self.ticket {
      self.ticket = nil
      self.port.monitor.end(ticket, code: code, received: self.messagesIn, sent: self.messagesOut)
    }
  }

  // MARK: - Writing

  /// The call's last frame, then RST_STREAM(NO_ERROR) if the client is still sending.
  private func write(_ ending: GRPCServerStreamState.Ending, context: ChannelHandlerContext) {
    var headers = ending.headers
    if ending.trailersOnly { self.addEcho(to: &headers) }
    self.activity.sentSinceLastPing = true
    context.write(Self.wrapOutboundOut(.headers(.init(headers: headers, endStream: true))), promise: nil)
    if ending.resetAfter {
      context.write(Self.wrapOutboundOut(.rstStream(.noError)), promise: nil)
    }
    self.flushSoon(context)
  }

  private func writeHeaders(_ headers: HPACKHeaders, endStream: Bool, context: ChannelHandlerContext) {
    var headers = headers
    self.addEcho(to: &headers)
    self.activity.sentSinceLastPing = true
    context.write(Self.wrapOutboundOut(.headers(.init(headers: headers, endStream: endStream))), promise: nil)
  }

  /// `--echo-metadata`: the request's metadata as `echo-<key>` response headers.
  private func addEcho(to headers: inout HPACKHeaders) {
    guard self.port.echoMetadata, let call = self.call else { return }
    for (name, value, _) in call.metadata where MetadataEcho.echoes(name) {
      headers.add(name: "echo-\(name)", value: value)
    }
  }

  private func writePending(_ context: ChannelHandlerContext) {
    guard let pending = self.pending, pending.readableBytes > 0 else { return }
    self.pending = nil
    self.activity.sentSinceLastPing = true
    context.write(Self.wrapOutboundOut(.data(.init(data: .byteBuffer(pending)))), promise: nil)
  }

  /// Runs an engine callback as one turn: what it writes is flushed once, when it returns.
  private func inCallback(_ context: ChannelHandlerContext, _ body: () -> Void) {
    let outer = self.inTurn
    self.inTurn = true
    body()
    self.inTurn = outer
    if !outer { self.flushNow(context) }
  }

  /// Flushes at the end of the current turn; output from the handler's own timers is flushed on
  /// the loop's next task, once however much it wrote.
  private func flushSoon(_ context: ChannelHandlerContext) {
    self.flushNeeded = true
    guard !self.inTurn, !self.flushScheduled else { return }
    self.flushScheduled = true
    context.eventLoop.assumeIsolated().execute {
      self.flushScheduled = false
      if let context = self.context { self.flushNow(context) }
    }
  }

  private func flushNow(_ context: ChannelHandlerContext) {
    guard self.flushNeeded else { return }
    self.flushNeeded = false
    self.writePending(context)
    context.flush()
  }
}

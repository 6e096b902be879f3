internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP2

/// One gRPC call on one HTTP/2 stream, served by its connection's `GRPCConnectionHandler` on the
/// connection's event loop (no channel per stream): feeds the stream's frames to a
/// `GRPCServerStreamState`, runs the routed method's `RPCHandler`, and writes what they decide.
///
/// Output is batched: response messages go into one buffer that is written as a DATA frame when
/// it reaches 16 KiB, when the call ends, or when the connection flushes at the end of the loop
/// turn. Backpressure: a stream is writable while less than `highWatermark` bytes of its DATA
/// wait in swift-nio-http2's flow-control buffer or the socket (counted by write promises). While
/// it is not, the stream's request DATA is queued here instead of delivered and its receive
/// window is not reopened, so HTTP/2 flow control stops a client that floods requests without
/// reading; a producer waits for `becameWritable`.
final class GRPCStream: CallResponder {
  /// The largest DATA frame the batching builds (HTTP/2's default SETTINGS_MAX_FRAME_SIZE).
  static let batchBytes = 16_384
  /// Not writable from this many bytes waiting to go out, writable again below `lowWatermark`.
  static let highWatermark = 4 * batchBytes
  static let lowWatermark = 2 * batchBytes

  let id: HTTP2StreamID
  /// Strong: the connection drops its streams when they close and when it goes away.
  private let connection: GRPCConnectionHandler
  private let port: GRPCPortContext
  private var state: GRPCServerStreamState
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
  /// Bytes of DATA written whose write has not completed (flow control, the socket).
  private var unsentBytes = 0
  private var belowWatermark = true
  /// The handler saw `isWritable` false, or request DATA is queued: call `becameWritable`.
  private var waitingForWritability = false
  /// Request DATA that arrived while the stream was not writable, in order.
  private var queuedRequest: CircularBuffer<(bytes: ByteBuffer, endStream: Bool)> = []
  private var queuedBytes = 0
  /// The stream's receive window as swift-nio-http2 last reported it.
  private var receiveWindow: Int?

  init(id: HTTP2StreamID, connection: GRPCConnectionHandler, port: GRPCPortContext) {
    self.id = id
    self.connection = connection
    self.port = port
    self.state = GRPCServerStreamState(maximumMessageBytes: port.maximumMessageBytes)
  }

  // MARK: - CallResponder

  var eventLoop: any EventLoop { self.connection.eventLoop }

  var isWritable: Bool {
    let writable = self.belowWatermark && self.queuedRequest.isEmpty
    if !writable { self.waitingForWritability = true }
    return writable
  }

  private(set) var messageCompressed = false

  func send(serialized message: [UInt8], compressed: Bool) {
    guard message.count <= self.port.maximumMessageBytes else {
      self.finish(GRPCErrors.messageTooLarge(message.count, limit: self.port.maximumMessageBytes, received: false))
      return
    }
    let (headers, open) = self.state.sendingMessage()
    guard open else { return }
    if let headers { self.writeHeaders(headers) }
    var gzipped: ByteBuffer?
    if compressed, self.state.compressesResponses {
      gzipped = GzipMessage.deflate(message, allocator: self.connection.allocator)
    }
    let first = self.pending == nil
    var pending = self.pending ?? self.connection.allocator.buffer(capacity: Self.batchBytes)
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
    if pending.readableBytes >= Self.batchBytes {
      self.writePending(counted: true)
    } else if first {
      self.connection.writeAtFlush(self)
    }
    self.connection.flushSoon()
  }

  func finish(_ error: RPCError?, trailers: HPACKHeaders) {
    guard let ending = self.state.finishing(error, trailers: trailers) else { return }
    // The call's last DATA: nothing waits on its writability, so no promise counts it.
    self.writePending(counted: false)
    self.write(ending)
    self.ended(code: error.map { "\($0.code)" } ?? "ok")
  }

  // MARK: - Events from the connection

  func receivedHeaders(_ headers: HPACKHeaders, endStream: Bool) {
    guard self.queuedRequest.isEmpty else {
      // Trailers behind queued DATA: only their end matters, in order.
      if endStream { self.queue(ByteBuffer(), endStream: true) }
      return
    }
    switch self.state.receivedHeaders(headers, endStream: endStream) {
    case .trailers(let action):
      self.deliver(action)
    case .refuse(let ending, let error):
      self.port.logger.debug(
        "Refused a malformed gRPC request",
        metadata: ["sluice.rpc.method": "\(headers.first(name: ":path") ?? "")", "sluice.error": "\(error)"]
      )
      self.write(ending)
    case .start(let head):
      self.start(head, headers: headers, endStream: endStream)
    }
  }

  func receivedData(_ data: HTTP2Frame.FramePayload.Data) {
    guard case .byteBuffer(let bytes) = data.data else { return }
    if self.queuedRequest.isEmpty, self.belowWatermark {
      self.deliver(self.state.receivedData(bytes, endStream: data.endStream))
    } else {
      self.queue(bytes, endStream: data.endStream)
    }
  }

  /// The client reset the stream, or swift-nio-http2 closed it (a stream error, the connection
  /// going away): the call is cancelled if it was still open.
  func reset() {
    self.stop(GRPCErrors.cancelled, write: false)
    self.queuedRequest.removeAll()
  }

  /// A graceful shutdown began: streams end with UNAVAILABLE now, so that clients see a status
  /// and retry elsewhere; unary calls are left to finish.
  func quiesce() {
    guard self.state.isOpen, let method = self.method, method.kind != .unary else { return }
    self.stop(GRPCErrors.shuttingDown, write: true)
  }

  /// swift-nio-http2 reports the stream's receive window (it shrinks as DATA arrives).
  func receiveWindowChanged(_ window: Int) {
    self.receiveWindow = window
    self.reopenReceiveWindow()
  }

  /// The connection's socket became writable again.
  func connectionBecameWritable() {
    self.writabilityMayHaveChanged()
  }

  // MARK: - The call

  private func start(_ head: GRPCServerStreamState.RequestHead, headers: HPACKHeaders, endStream: Bool) {
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
      self.deadline = self.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
        self.connection.inCallback { self.stop(GRPCErrors.deadlineExceeded, write: true) }
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
      self.writeHeaders(responseHeaders)
      self.connection.flushSoon()
    }
    if endStream { self.deliver(.deliver([], ended: true)) }
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
    self.queuedRequest.removeAll()
    self.queuedBytes = 0
    if self.holdsLimiterSlot {
      self.holdsLimiterSlot = false
      self.port.limiter.release()
    }
    if let ticket = self.ticket {
      self.ticket = nil
      self.port.monitor.end(ticket, code: code, received: self.messagesIn, sent: self.messagesOut)
    }
  }

  // MARK: - Flow control

  private func queue(_ bytes: ByteBuffer, endStream: Bool) {
    guard self.state.isOpen else { return }
    self.queuedRequest.append((bytes, endStream))
    self.queuedBytes += bytes.readableBytes
    self.waitingForWritability = true
  }

  /// Delivers queued request DATA while the stream stays writable, then reopens the receive
  /// window for what was consumed, and tells a waiting handler.
  private func writabilityMayHaveChanged() {
    guard self.belowWatermark, self.waitingForWritability else { return }
    self.waitingForWritability = false
    while self.belowWatermark, let (bytes, endStream) = self.queuedRequest.popFirst() {
      self.queuedBytes -= bytes.readableBytes
      self.deliver(self.state.receivedData(bytes, endStream: endStream))
    }
    if !self.queuedRequest.isEmpty {
      self.waitingForWritability = true
      return
    }
    self.reopenReceiveWindow()
    if self.state.isOpen, let handler = self.handler, let call = self.call {
      handler.becameWritable(call)
    }
  }

  /// A WINDOW_UPDATE once the window (counting queued bytes as still unread) is down to half
  /// the target, as swift-nio-http2's stream channels do; none while the client is done sending.
  private func reopenReceiveWindow() {
    guard let window = self.receiveWindow, self.state.isOpen, !self.state.requestEnded,
      let increment = GRPCConnectionHandler.windowIncrement(
        window: window + self.queuedBytes,
        target: self.connection.targetWindow
      )
    else { return }
    self.receiveWindow = window + increment
    self.connection.write(HTTP2Frame(streamID: self.id, payload: .windowUpdate(windowSizeIncrement: increment)))
    self.connection.flushSoon()
  }

  private func wrote(_ bytes: Int) {
    self.unsentBytes -= bytes
    if !self.belowWatermark, self.unsentBytes < Self.lowWatermark {
      self.belowWatermark = true
      self.connection.inCallback { self.writabilityMayHaveChanged() }
    }
  }

  // MARK: - Writing

  /// The call's last frame, then RST_STREAM(NO_ERROR) if the client is still sending.
  private func write(_ ending: GRPCServerStreamState.Ending) {
    var headers = ending.headers
    if ending.trailersOnly { self.addEcho(to: &headers) }
    self.connection.write(HTTP2Frame(streamID: self.id, payload: .headers(.init(headers: headers, endStream: true))))
    if ending.resetAfter {
      self.connection.write(HTTP2Frame(streamID: self.id, payload: .rstStream(.noError)))
    }
    self.connection.flushSoon()
  }

  private func writeHeaders(_ headers: HPACKHeaders) {
    var headers = headers
    self.addEcho(to: &headers)
    self.connection.write(HTTP2Frame(streamID: self.id, payload: .headers(.init(headers: headers))))
  }

  /// `--echo-metadata`: the request's metadata as `echo-<key>` response headers.
  private func addEcho(to headers: inout HPACKHeaders) {
    guard self.port.echoMetadata, let call = self.call else { return }
    for (name, value, _) in call.metadata where MetadataEcho.echoes(name) {
      headers.add(name: "echo-\(name)", value: value)
    }
  }

  /// Writes the batched messages as one DATA frame; `counted`: its bytes count against the
  /// stream's writability until the write completes.
  func writePending(counted: Bool = true) {
    guard let pending = self.pending, pending.readableBytes > 0 else { return }
    self.pending = nil
    let frame = HTTP2Frame(streamID: self.id, payload: .data(.init(data: .byteBuffer(pending))))
    guard counted else {
      self.connection.write(frame)
      return
    }
    let bytes = pending.readableBytes
    self.unsentBytes += bytes
    if self.unsentBytes >= Self.highWatermark { self.belowWatermark = false }
    let promise = self.eventLoop.makePromise(of: Void.self)
    promise.futureResult.assumeIsolated().whenComplete { _ in self.wrote(bytes) }
    self.connection.write(frame, promise: promise)
  }
}

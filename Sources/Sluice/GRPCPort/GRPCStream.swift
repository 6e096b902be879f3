internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP2

/// One gRPC call on one HTTP/2 stream, served by its connection (an `GRPCServerConnection`) on
/// the connection's event loop (no channel per stream): feeds the stream's frames to a
/// `GRPCServerStreamState`, runs the routed method's `RPCHandler`, and writes what they decide.
///
/// Output is batched: response messages go into one buffer that is written as a DATA frame when
/// it reaches 16 KiB, when the call ends, or when the connection flushes at the end of the loop
/// turn. Backpressure: a stream is writable while less than `highWatermark` bytes of its DATA
/// wait for nghttp2 to pull them (flow control, the socket). While
/// it is not, the stream's request DATA is queued here instead of delivered and its receive
/// window is not reopened, so HTTP/2 flow control stops a client that floods requests without
/// reading; a producer waits for `becameWritable`.
///
/// Limits on what a client sends, as on every transport: the request bytes a stream holds (queued
/// DATA, a message begun) are reserved in the engine's `--max-buffered-request-bytes` budget, and a
/// request message must arrive within `--body-timeout` once begun (for unary and server-streaming
/// calls, whose one message is due at once, from the call's start), counted only while the stream
/// is reading. Either one ends the call (`RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`).
final class GRPCStream: FramedCallResponder, TurnBatched, HTTP2ServerStream {
  /// The largest DATA frame the batching builds (HTTP/2's default SETTINGS_MAX_FRAME_SIZE).
  static let batchBytes = 16_384
  /// Not writable from this many bytes waiting to go out, writable again below `lowWatermark`.
  static let highWatermark = 4 * batchBytes
  static let lowWatermark = 2 * batchBytes

  let id: HTTP2StreamID
  /// How long a client that has not half-closed when its call ended may go on before the
  /// stream is reset with NO_ERROR (see `write(_:)`).
  static let resetGrace = TimeAmount.seconds(1)

  /// Strong: the connection drops its streams when they close and when it goes away.
  private let connection: GRPCServerConnection
  private let engine: RPCEngine
  private var state: GRPCServerStreamState
  /// The call's admission, handler, deadline and counts, from routing to `ended`.
  private var lifecycle = CallLifecycle()
  /// The handler, when it takes request messages still framed (a proxy; see `passesFramed`).
  private var framedHandler: (any FramedRPCHandler)?
  /// The client has half-closed (whether or not the call was still open then).
  private var clientEnded = false
  /// Resets the stream if the client has not half-closed `resetGrace` after the call ended.
  private var resetTimer: Scheduled<Void>?

  /// Response messages not yet written as a DATA frame.
  private var pending: ByteBuffer?
  /// The size of the last batch written: the next one is made that large.
  private var lastBatchBytes = 0
  /// Bytes of DATA written whose write has not completed (flow control, the socket).
  private var unsentBytes = 0
  private var belowWatermark = true
  /// The handler saw `isWritable` false, or request DATA is queued: call `becameWritable`.
  private var waitingForWritability = false
  /// The handler holds requests back (`holdRequests`): DATA is queued and its window kept shut.
  private var requestsHeld = false
  /// Whether request DATA may be delivered now.
  private var delivering: Bool { self.belowWatermark && !self.requestsHeld }
  /// Request DATA that arrived while the stream was not writable, in order, with its
  /// flow-controlled length.
  private var queuedRequest = InlineFirstQueue<(bytes: ByteBuffer, endStream: Bool, length: Int)>()
  private var queuedBytes = 0
  /// Request bytes held (queued and of a message begun), reserved in `engine.budget`.
  private var heldBytes = 0
  /// Since when the stream has waited for a request message due within `--body-timeout`.
  private(set) var awaitingSince: NIODeadline?

  init(id: HTTP2StreamID, connection: GRPCServerConnection, engine: RPCEngine) {
    self.id = id
    self.connection = connection
    self.engine = engine
    self.state = GRPCServerStreamState(maximumMessageBytes: engine.maximumMessageBytes)
  }

  // MARK: - CallResponder

  var eventLoop: any EventLoop { self.connection.eventLoop }

  var outputTurn: ConnectionTurn? { self.connection.turn }

  /// Whether output goes out now. Queued request DATA makes a stream that reads its requests
  /// not writable until they are delivered (a handler answers them first), but not one whose
  /// handler holds its requests back: a proxy holds them while its upstream is not reading, and
  /// the upstream may be waiting for the proxy to take its responses (grpc-go's Route sends before
  /// it receives again), so output must go on then.
  var isWritable: Bool {
    let writable = self.belowWatermark && (self.requestsHeld || self.queuedRequest.isEmpty)
    if !writable { self.waitingForWritability = true }
    return writable
  }

  private(set) var messageCompressed = false

  /// A proxy's response message, framed from its buffer with no copy into an array.
  func send(buffer message: ByteBuffer) {
    guard message.readableBytes <= self.engine.maximumMessageBytes else {
      self.finish(
        GRPCErrors.messageTooLarge(message.readableBytes, limit: self.engine.maximumMessageBytes, received: false))
      return
    }
    guard self.openMessage() else { return }
    self.appendFramed(bytes: 5 + message.readableBytes) { $0.writeGRPCMessage(message) }
  }

  func send(serialized message: [UInt8], compressed: Bool) {
    guard message.count <= self.engine.maximumMessageBytes else {
      self.finish(GRPCErrors.messageTooLarge(message.count, limit: self.engine.maximumMessageBytes, received: false))
      return
    }
    guard self.openMessage() else { return }
    var gzipped: ByteBuffer?
    if compressed, self.state.compressesResponses {
      gzipped = GzipMessage.deflate(message, allocator: self.connection.allocator)
    }
    if let gzipped {
      self.appendFramed(bytes: 5 + gzipped.readableBytes) { $0.writeGRPCMessage(gzipped, compressed: true) }
    } else {
      self.appendFramed(bytes: 5 + message.count) { $0.writeGRPCMessage(bytes: message) }
    }
  }

  /// A proxy's response messages as its upstream framed them: into the batch as they are, with
  /// no message cut out and framed again.
  func send(framed messages: ByteBuffer, count: Int) {
    guard self.openMessage() else { return }
    if self.pending == nil, messages.readableBytes >= Self.batchBytes {
      // A frame's worth or more: queued as it is, without a copy into a batch.
      self.lifecycle.sending(count)
      self.pending = messages
      self.writePending(counted: true)
      self.connection.flushSoon()
      return
    }
    self.appendFramed(count: count, bytes: messages.readableBytes) { $0.writeImmutableBuffer(messages) }
  }

  /// Whether a response message may go out now; writes the response headers first if they have
  /// not gone yet.
  private func openMessage() -> Bool {
    let (headers, open) = self.state.sendingMessage()
    guard open else { return false }
    if let headers { self.writeHeaders(headers) }
    return true
  }

  /// Adds `count` length-prefixed messages to the batch, written as DATA at 16 KiB or at the flush.
  private func appendFramed(count: Int = 1, bytes: Int, _ write: (inout ByteBuffer) -> Void) {
    let first = self.pending == nil
    // A new batch has room for this message, or for as much as the last batch held (up to 16 KiB):
    // a unary call's one small response no longer takes a 16 KiB allocation.
    var pending =
      self.pending ?? self.connection.allocator.buffer(capacity: max(bytes, min(self.lastBatchBytes, Self.batchBytes)))
    self.pending = nil  // unique while written to: no copy
    write(&pending)
    self.pending = pending
    self.lifecycle.sending(count)
    if pending.readableBytes >= Self.batchBytes {
      self.writePending(counted: true)
    } else if first {
      self.connection.writeAtFlush(self)
    }
    self.connection.flushSoon()
  }

  func sendHeaders(_ metadata: HPACKHeaders) {
    guard let call = self.lifecycle.call, var headers = self.state.sendingMessage().headers else { return }
    headers.add(contentsOf: self.engine.responseMetadata(metadata, for: call))
    self.connection.sendHeaders(headers, endStream: false, on: self)
    self.connection.flushSoon()
  }

  func holdRequests(_ hold: Bool) {
    guard hold != self.requestsHeld else { return }
    self.requestsHeld = hold
    if hold {
      self.accountRequest()
    } else {
      self.waitingForWritability = true
      self.connection.inCallback { self.writabilityMayHaveChanged() }
    }
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
    if endStream { self.clientHalfClosed() }
    guard self.queuedRequest.isEmpty else {
      // Trailers behind queued DATA: only their end matters, in order.
      if endStream { self.queue(ByteBuffer(), endStream: true, length: 0) }
      return
    }
    switch self.state.receivedHeaders(headers, endStream: endStream) {
    case .trailers(let action):
      self.deliver(action)
    case .refuse(let ending, let error):
      self.engine.logger.debug(
        "Refused a malformed gRPC request",
        metadata: ["sluice.rpc.method": "\(headers.first(name: ":path") ?? "")", "sluice.error": "\(error)"]
      )
      self.write(ending)
    case .start(let head):
      self.start(head, headers: headers, endStream: endStream)
    }
  }

  /// Request DATA; `length` is its flow-controlled length (padding included).
  func receivedData(_ bytes: ByteBuffer, endStream: Bool, length: Int) {
    if endStream { self.clientHalfClosed() }
    if self.queuedRequest.isEmpty, self.delivering {
      self.deliverData(bytes, endStream: endStream, length: length)
    } else {
      self.queue(bytes, endStream: endStream, length: length)
    }
  }

  /// The client reset the stream, or swift-nio-http2 closed it (a stream error, the connection
  /// going away): the call is cancelled if it was still open.
  func reset() {
    self.stop(GRPCErrors.cancelled, write: false)
    self.queuedRequest.removeAll()
    self.queuedBytes = 0
    self.resetTimer?.cancel()
    self.resetTimer = nil
  }

  private func clientHalfClosed() {
    self.clientEnded = true
    self.resetTimer?.cancel()
    self.resetTimer = nil
  }

  /// A graceful shutdown began: streams end with UNAVAILABLE now, so that clients see a status
  /// and retry elsewhere; unary calls are left to finish.
  func quiesce() {
    guard self.state.isOpen, let method = self.lifecycle.method, method.kind != .unary else { return }
    self.stop(GRPCErrors.shuttingDown, write: true)
  }

  /// The connection's socket became writable again.
  func connectionBecameWritable() {
    self.writabilityMayHaveChanged()
  }

  // MARK: - The call

  private func start(_ head: GRPCServerStreamState.RequestHead, headers: HPACKHeaders, endStream: Bool) {
    let refusal = self.lifecycle.begin(
      self.engine,
      path: head.path,
      metadata: headers,
      timeout: head.timeout,
      origin: CallOrigin(
        peerAddress: self.connection.remoteAddress, source: .metadata, peerText: self.connection.remoteIP),
      transport: .grpc,
      responder: self,
      // Made only for a call with a deadline: a closure is an allocation per call.
      expired: head.timeout == nil
        ? nil : { self.connection.inCallback { self.stop(GRPCErrors.deadlineExceeded, write: true) } }
    )
    if let refusal {
      self.finish(refusal)
      return
    }
    guard let method = self.lifecycle.method, let handler = self.lifecycle.handler, let call = self.lifecycle.call
    else { return }
    self.state.compressesResponses = method.compressesResponses && GRPCServerStreamState.acceptsGzip(headers)
    self.framedHandler = handler as? any FramedRPCHandler
    self.state.passesFramed = self.framedHandler != nil
    // The response headers go out with the first flush, before any message: clients such as
    // grpc-swift's wait for them before they send their first request message. (A handler that
    // sends its own later, a proxy, gets them from its upstream.)
    if let metadata = CallLifecycle.start(handler, call, engine: self.engine),
      var responseHeaders = self.state.sendingMessage().headers
    {
      responseHeaders.add(contentsOf: metadata)
      self.connection.sendHeaders(responseHeaders, endStream: false, on: self)
      self.connection.flushSoon()
    }
    if endStream { self.deliver(.deliver([], ended: true)) }
    self.accountRequest()
  }

  /// Hands messages and the request's end to the handler, while the call stays open.
  private func deliver(_ action: GRPCServerStreamState.RequestAction) {
    switch action {
    case .deliver(let messages, let ended):
      guard let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
      for message in messages {
        guard self.state.isOpen else { return }
        self.lifecycle.receiving()
        self.messageCompressed = message.compressed
        handler.received(message.bytes, call)
      }
      if ended, self.state.isOpen { handler.receivedEnd(call) }
    case .deliverFramed(let messages, let count, let ended):
      guard let handler = self.framedHandler, let call = self.lifecycle.call else { return }
      if count > 0, self.state.isOpen {
        self.lifecycle.receiving(count)
        self.messageCompressed = false
        handler.receivedFramed(messages, count: count, call)
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
    let handler = self.lifecycle.handler
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
    self.lifecycle.end(self.engine, code: code)
    self.framedHandler = nil
    self.queuedRequest.removeAll()
    self.queuedBytes = 0
    self.awaitingSince = nil
    self.engine.budget.release(self.heldBytes)
    self.heldBytes = 0
  }

  // MARK: - Flow control

  private func queue(_ bytes: ByteBuffer, endStream: Bool, length: Int) {
    guard self.state.isOpen else { return }
    self.queuedRequest.append((bytes, endStream, length))
    self.queuedBytes += bytes.readableBytes
    self.waitingForWritability = true
    self.accountRequest()
  }

  /// Brings the stream's hold on the budget and its body timer up to date with what it holds now;
  /// ends the call when the budget has no room for it.
  private func accountRequest() {
    guard self.state.isOpen, let method = self.lifecycle.method else { return }
    let held = self.queuedBytes + self.state.partialMessageBytes
    if held > self.heldBytes {
      guard self.engine.budget.reserve(held - self.heldBytes) else {
        self.stop(GRPCErrors.requestBufferFull(limit: self.engine.budget.limit), write: true)
        return
      }
    } else if held < self.heldBytes {
      self.engine.budget.release(self.heldBytes - held)
    }
    self.heldBytes = held
    let oneMessage = method.kind == .unary || method.kind == .serverStreaming
    let waiting =
      self.delivering && !self.state.requestEnded && (oneMessage || self.state.partialMessageBytes > 0)
    if !waiting {
      self.awaitingSince = nil
    } else if self.awaitingSince == nil {
      self.awaitingSince = .now()
      self.connection.watchBody(self)
    }
  }

  /// The connection's body timer: ends the call if its request message has been due for longer
  /// than `--body-timeout` at `now`; returns whether the stream still waits (and is to be watched).
  func checkBody(at now: NIODeadline) -> Bool {
    guard let since = self.awaitingSince else { return false }
    guard self.delivering else {
      // Not reading (the gateway's side is slow): the timer waits until it reads again.
      self.awaitingSince = nil
      return false
    }
    guard now - since >= TimeAmount(self.engine.bodyTimeout) else { return true }
    self.stop(GRPCErrors.bodyTimedOut("the request message", after: self.engine.bodyTimeout), write: true)
    return false
  }

  /// Hands DATA to the call and returns its bytes to the client's window, unless the client is
  /// done sending or the call is over (a window update would then be of no use).
  private func deliverData(_ bytes: ByteBuffer, endStream: Bool, length: Int) {
    self.deliver(self.state.receivedData(bytes, endStream: endStream))
    if length > 0, self.state.isOpen, !self.state.requestEnded {
      self.connection.consumed(length, on: self)
    }
    self.accountRequest()
  }

  /// Delivers queued request DATA while the stream reads (writable, requests not held), then tells
  /// a waiting handler that output goes out again: also while its requests are held, since a
  /// handler that holds them may be the one waiting to write (see `isWritable`).
  private func writabilityMayHaveChanged() {
    self.accountRequest()  // the body timer runs again while the stream reads
    guard self.belowWatermark, self.waitingForWritability else { return }
    self.waitingForWritability = false
    while self.delivering, let (bytes, endStream, length) = self.queuedRequest.popFirst() {
      self.queuedBytes -= bytes.readableBytes
      self.deliverData(bytes, endStream: endStream, length: length)
    }
    if !self.belowWatermark {
      self.waitingForWritability = true
      return
    }
    if self.state.isOpen, let handler = self.lifecycle.handler, let call = self.lifecycle.call {
      handler.becameWritable(call)
    }
  }

  /// `bytes` of counted DATA left the connection.
  func wrote(_ bytes: Int) {
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
    self.connection.sendHeaders(headers, endStream: true, on: self)
    if ending.resetAfter, !self.clientEnded {
      // The client is still sending: as grpc-go does, RST_STREAM(NO_ERROR) tells it to stop, but
      // only if it has not half-closed within a short grace. Right after the trailers, a client
      // whose last DATA is on its way would get it as an error (curl 7.88 then drops the
      // response), and RFC 9113 §8.1 allows either.
      self.resetTimer = self.eventLoop.assumeIsolated().scheduleTask(in: Self.resetGrace) {
        self.resetTimer = nil
        guard !self.clientEnded else { return }
        self.connection.inCallback { self.connection.sendReset(.noError, on: self) }
      }
    }
    self.connection.flushSoon()
  }

  private func writeHeaders(_ headers: HPACKHeaders) {
    var headers = headers
    self.addEcho(to: &headers)
    self.connection.sendHeaders(headers, endStream: false, on: self)
  }

  /// `--echo-metadata`: the request's metadata as `echo-<key>` response headers.
  private func addEcho(to headers: inout HPACKHeaders) {
    guard self.engine.echoMetadata, let call = self.lifecycle.call else { return }
    MetadataEcho.echo(call.metadata, into: &headers)
  }

  /// Writes the batched messages as one DATA frame; `counted`: its bytes count against the
  /// stream's writability until the write completes.
  func writePending() {
    self.writePending(counted: true)
  }

  func writePending(counted: Bool) {
    guard let pending = self.pending, pending.readableBytes > 0 else { return }
    self.pending = nil
    self.lastBatchBytes = pending.readableBytes
    if counted {
      self.unsentBytes += pending.readableBytes
      if self.unsentBytes >= Self.highWatermark { self.belowWatermark = false }
    }
    self.connection.sendData(pending, counted: counted, on: self)
  }
}

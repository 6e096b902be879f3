internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import SluiceCodec

/// One RPC of a multiplexed session: the `CallResponder` its handler answers through, on the
/// session's event loop. It keeps the call's lifecycle, its half-close and its credits
/// (`MuxCredits`), and writes its frames through the session, each tagged with its id.
///
/// A stream waiting for response credit holds back only its own producer: `isWritable` is false
/// for it alone (a proxied call then keeps its upstream window shut), and a handler that sends
/// anyway (one driven by requests, such as Route) has its responses queued while the stream grants
/// no request credit, so the queue holds at most a window's worth.
final class MuxStream: CallResponder {
  let id: MuxStreamID
  let method: SluiceCodec.MethodDescriptor
  private weak var session: MuxSessionHandler?
  let eventLoop: any EventLoop
  private let engine: RPCEngine
  var lifecycle = CallLifecycle()
  private(set) var credits: MuxCredits
  private(set) var halfClosed = false
  /// The handler holds requests back (`holdRequests`).
  private var held = false
  /// The handler saw `isWritable` false: it waits for `becameWritable`.
  private var wantsWritable = false
  private var headersSent = false
  /// Response frames waiting for credit, and the end frame behind them once the handler finished.
  private var waiting: [ByteBuffer] = []
  private var ending: ByteBuffer?

  init(id: MuxStreamID, method: SluiceCodec.MethodDescriptor, credit: Int?, session: MuxSessionHandler) {
    self.id = id
    self.method = method
    self.session = session
    self.eventLoop = session.eventLoop
    self.engine = session.engine
    self.credits = MuxCredits(responses: credit)
  }

  /// Whether the stream is open: its handler runs, or its end waits for credit.
  var isOpen: Bool { self.lifecycle.isRunning || self.ending != nil }

  /// Whether the stream waits for response credit (a Close from the client cancels it then).
  var waitsForCredit: Bool { self.isOpen && !self.credits.maySend }

  // MARK: - From the client

  /// A request message, already translated to protobuf: past the credit it ends the stream with
  /// `RESOURCE_EXHAUSTED`; one-request methods half-close after it.
  func received(_ message: [UInt8]) {
    guard self.lifecycle.isRunning else { return }
    guard !self.halfClosed else {
      let error =
        self.method.takesOneRequest ? GRPCErrors.expectedOneJSONMessage(got: 2) : GRPCErrors.muxMessageAfterEnd
      return self.fail(error)
    }
    guard self.credits.received() else { return self.fail(GRPCErrors.muxRequestCreditExceeded) }
    guard let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
    self.lifecycle.receiving()
    var buffer = ByteBufferAllocator().buffer(capacity: message.count)
    buffer.writeBytes(message)
    handler.received(buffer, call)
    if self.method.takesOneRequest { self.halfClose() }
    self.grantRequests()
  }

  /// The client's `end` (or its Close): the handler's request ends. A one-request method that had
  /// no message ends with `INVALID_ARGUMENT`.
  func halfClose() {
    guard self.lifecycle.isRunning, !self.halfClosed else { return }
    self.halfClosed = true
    if self.method.takesOneRequest, self.lifecycle.messagesIn == 0 {
      return self.fail(GRPCErrors.expectedOneJSONMessage(got: 0))
    }
    guard let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
    handler.receivedEnd(call)
  }

  /// The client's `credit` frame: queued responses go out, then a waiting producer resumes.
  func granted(_ count: Int) {
    guard self.isOpen else { return }
    let resumed = self.credits.granted(count)
    self.sendWaiting()
    guard resumed, self.lifecycle.isRunning, self.waiting.isEmpty else { return }
    self.grantRequests()
    self.resumeIfWaiting()
  }

  /// The socket can take output again (or credit came): a producer that waited resumes.
  func resumeIfWaiting() {
    guard self.wantsWritable, self.isWritable, let handler = self.lifecycle.handler, let call = self.lifecycle.call
    else { return }
    self.wantsWritable = false
    handler.becameWritable(call)
  }

  /// Ends the stream without its handler: its `end` says `error` (a cancel, bad input, the
  /// deadline, a shutdown), the handler is stopped, and responses still waiting are dropped.
  func fail(_ error: RPCError) {
    guard self.isOpen else { return }
    self.waiting = []
    self.ending = nil
    self.lifecycle.end(self.engine, code: "\(error.code)")?.stopped()
    guard let session = self.session else { return }
    session.streamEnded(self, frame: self.endFrame(error, trailers: [:], session: session))
  }

  /// The connection is gone: the handler is stopped and nothing is written.
  func abandon() {
    self.waiting = []
    self.ending = nil
    self.lifecycle.end(self.engine, code: "cancelled")?.stopped()
  }

  // MARK: - CallResponder

  var isWritable: Bool {
    let writable = (self.session?.isSocketWritable ?? false) && self.credits.maySend && self.waiting.isEmpty
    if !writable { self.wantsWritable = true }
    return writable
  }

  var messageCompressed: Bool { false }

  var outputTurn: ConnectionTurn? { self.session?.turn }

  func send(serialized message: [UInt8], compressed: Bool) {
    guard self.lifecycle.isRunning, let session = self.session else { return }
    let json: [UInt8]
    do {
      json = try session.bridge.decodeResponse(message, for: self.method)
    } catch {
      return self.fail(error)
    }
    self.lifecycle.sending()
    self.headersSent = true
    let frame = session.frame(self.id, "message", json)
    guard self.credits.maySend, self.waiting.isEmpty else {
      self.waiting.append(frame)
      return
    }
    self.credits.sent()
    session.write(frame)
    if !self.credits.maySend { session.creditRanOut(self) }
  }

  func sendHeaders(_ metadata: HPACKHeaders) {
    guard self.lifecycle.isRunning, !self.headersSent, let call = self.lifecycle.call else { return }
    self.headersSent = true
    self.writeHeaders(self.engine.responseMetadata(metadata, for: call))
  }

  func holdRequests(_ hold: Bool) {
    self.held = hold
    if !hold { self.grantRequests() }
  }

  func finish(_ error: RPCError?, trailers: HPACKHeaders) {
    guard self.lifecycle.isRunning else { return }
    self.lifecycle.end(self.engine, code: error.map { "\($0.code)" } ?? "ok")
    guard let session = self.session else { return }
    let frame = self.endFrame(error, trailers: trailers, session: session)
    guard self.waiting.isEmpty else {
      self.ending = frame
      return
    }
    session.streamEnded(self, frame: frame)
  }

  // MARK: - Frames out

  /// The response headers the handler's `start` returned (with `--echo-metadata`'s), when not
  /// empty.
  func writeHeaders(_ headers: HPACKHeaders) {
    self.headersSent = true
    let object = StatusJSON.json(headers)
    guard !object.isEmpty else { return }
    guard let session = self.session else { return }
    session.write(session.frame(self.id, "headers", JSONValue.object(object).serializedBytes))
  }

  private func endFrame(_ error: RPCError?, trailers: HPACKHeaders, session: MuxSessionHandler) -> ByteBuffer {
    let status = StatusJSON.status(error, trailers: trailers, bridge: session.bridge)
    return session.frame(self.id, "end", JSONValue.object(status).serializedBytes)
  }

  /// Queued responses go out while credit lasts; the end follows the last of them.
  private func sendWaiting() {
    guard let session = self.session else { return }
    var sent = 0
    while sent < self.waiting.count, self.credits.maySend {
      self.credits.sent()
      session.write(self.waiting[sent])
      sent += 1
    }
    self.waiting.removeFirst(sent)
    guard self.waiting.isEmpty else { return }
    if let ending = self.ending {
      self.ending = nil
      session.streamEnded(self, frame: ending)
    } else if !self.credits.maySend {
      session.creditRanOut(self)
    }
  }

  /// Grants the client request credit, when the handler has taken enough and holds nothing back.
  private func grantRequests() {
    guard self.lifecycle.isRunning, let grant = self.credits.grant(held: self.held || !self.waiting.isEmpty) else {
      return
    }
    guard let session = self.session else { return }
    session.write(session.frame(self.id, "credit", Array(String(grant).utf8)))
  }
}

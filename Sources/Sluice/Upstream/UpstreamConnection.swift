internal import CNGHTTP2
internal import Logging
internal import NIOCore
internal import NIOHPACK

/// What an upstream stream tells the call it carries. Every method is called on the connection's
/// event loop.
protocol UpstreamStreamDelegate: AnyObject {
  /// Response headers, or trailers when `endStream` (a trailers-only response has no others).
  func upstreamHeaders(_ headers: HPACKHeaders, endStream: Bool)
  /// Response DATA; `length` is its flow-controlled size, returned with `consumed` once the call
  /// has taken it.
  func upstreamData(_ bytes: ByteBuffer, length: Int)
  /// `bytes` of the request's DATA left for the upstream (its window took them).
  func upstreamTook(_ bytes: Int)
  /// The stream closed: after trailers (`reason` nil), reset by the upstream or by nghttp2 (its
  /// HTTP/2 error code), or with the connection.
  func upstreamClosed(_ reason: UpstreamConnection.CloseReason?)
}

/// One HTTP/2 connection to an upstream gRPC server, as a channel handler on an engine event loop:
/// an nghttp2 client session (Debian's libnghttp2, as the native port uses) fed the connection's
/// bytes, its output drained once per loop turn. Calls on the same loop open streams on it with
/// no hop.
///
/// Flow control is end to end: a stream's receive window is returned only as its call hands the
/// DATA on (`consumed`), so a client that does not read stops the upstream through HTTP/2; the
/// connection's window is returned on receipt. Request DATA waits in nghttp2's data source until
/// the upstream's window takes it, and the call hears how much left (`upstreamTook`).
///
/// Written by hand around nghttp2 for the same reason as the native port's `NGHTTP2Connection`:
/// swift-nio-http2's per-frame cost; the protocol itself (framing, HPACK, windows, SETTINGS and
/// PING answers, GOAWAY) is nghttp2's.
final class UpstreamConnection: ChannelDuplexHandler, TurnFlushing {
  typealias InboundIn = ByteBuffer
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  /// Why a stream closed without trailers.
  enum CloseReason: Error, CustomStringConvertible {
    /// The upstream (or nghttp2, on a protocol error) reset it with this HTTP/2 error code.
    case reset(UInt32)
    /// The connection went away (`detail` says how).
    case connectionLost(String)
    /// The upstream's header block was larger than `maxHeaderListBytes` (the stream was reset).
    case headersTooLarge

    var description: String {
      switch self {
      case .reset(let code): "stream reset with HTTP/2 error \(code)"
      case .connectionLost(let detail): detail
      case .headersTooLarge: "its response headers are over the limit of \(UpstreamConnection.maxHeaderListBytes) bytes"
      }
    }
  }

  /// A stream's receive window: what an upstream may send before a call has handed it on.
  static let streamWindow = 1 << 20
  /// The connection's receive window (returned on receipt).
  static let connectionWindow = 16 << 20
  /// The largest response header block (or trailers) taken from an upstream, counted as RFC 9113
  /// does (name, value and 32 bytes a field) and advertised as SETTINGS_MAX_HEADER_LIST_SIZE: a
  /// larger one (an HPACK bomb: a few bytes on the wire naming one big table entry again and
  /// again) resets the stream, and its call fails.
  static let maxHeaderListBytes = 64 << 10

  let address: String
  let eventLoop: any EventLoop
  private let logger: Logger
  private var session: OpaquePointer?
  private var context: ChannelHandlerContext?
  private var delegates: [Int32: any UpstreamStreamDelegate] = [:]
  private var outputs: [Int32: NGHTTP2Output] = [:]
  /// Response headers being received, by stream.
  private var incoming = NGHTTP2IncomingHeaders(limit: UpstreamConnection.maxHeaderListBytes)
  private var took: [(any UpstreamStreamDelegate, Int)] = []
  private var headerScratch = NGHTTP2HeaderScratch()
  let turn: ConnectionTurn
  private var closing = false
  /// The upstream sent GOAWAY: no new streams.
  private(set) var goingAway = false
  /// Called once when the connection can take streams (its preface is out), and once when it
  /// can take no more (closed, or GOAWAY); set by the pool.
  var onReady: (() -> Void)?
  var onGone: ((_ error: String?) -> Void)?

  init(address: String, eventLoop: any EventLoop, logger: Logger) {
    self.address = address
    self.eventLoop = eventLoop
    self.logger = logger
    self.turn = ConnectionTurn(eventLoop: eventLoop)
  }

  deinit {
    if let session = self.session { nghttp2_session_del(session) }
  }

  /// Whether a new call may open a stream here.
  var isUsable: Bool { self.session != nil && self.context != nil && !self.closing && !self.goingAway }

  /// Open streams.
  var streamCount: Int { self.delegates.count }

  // MARK: - Streams

  /// Opens a stream with `headers` (pseudo-headers first); nil when the session refuses (it is
  /// closing, or out of stream IDs).
  func openStream(_ headers: HPACKHeaders, delegate: any UpstreamStreamDelegate) -> Int32? {
    guard let session = self.session, self.isUsable else { return nil }
    // The data source is submitted with the request and deferred until the call sends.
    var source = nghttp2_data_provider()
    source.read_callback = { session, id, buffer, length, flags, _, userData in
      guard let session, let userData, let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
      return UpstreamConnection.connection(userData).readData(
        session: session, id: id, into: buffer, length: length, flags: flags)
    }
    let id = self.headerScratch.withNameValues(headers) { nva, count in
      nghttp2_submit_request(session, nil, nva, count, &source, nil)
    }
    guard id > 0 else {
      if id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE.rawValue { self.stopTakingStreams(nil) }
      return nil
    }
    self.delegates[id] = delegate
    var output = NGHTTP2Output()
    output.sourceSubmitted = true
    self.outputs[id] = output
    self.turn.flushSoon()
    return id
  }

  /// Queues request DATA on a stream; the delegate hears `upstreamTook` as it leaves.
  func send(_ bytes: ByteBuffer, on id: Int32) {
    guard let index = self.outputs.index(forKey: id) else { return }
    self.outputs.values[index].append(bytes, counted: true)
    self.resume(id, index: index)
  }

  /// Half-closes a stream once its queued DATA is out.
  func end(_ id: Int32) {
    guard let index = self.outputs.index(forKey: id) else { return }
    self.outputs.values[index].ending = .endStream
    self.resume(id, index: index)
  }

  /// Resets a stream (CANCEL for a call that went away); its delegate hears nothing more.
  func reset(_ id: Int32, code: UInt32 = NGHTTP2_CANCEL.rawValue) {
    guard let session = self.session, self.delegates.removeValue(forKey: id) != nil else { return }
    self.outputs[id] = nil
    _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, code)
    self.turn.flushSoon()
  }

  /// The call handed on `bytes` of a stream's response DATA: the upstream may send that much more.
  func consumed(_ bytes: Int, on id: Int32) {
    guard let session = self.session, bytes > 0 else { return }
    _ = nghttp2_session_consume_stream(session, id, bytes)
    self.turn.flushSoon()
  }

  /// Closes the connection; open streams end as if it had been lost.
  func close() {
    self.fail(nil)
  }

  /// Runs a call's callback as one turn of this connection: what it submits is flushed once.
  func inCallback(_ body: () -> Void) {
    self.turn.inCallback(body)
  }

  private func resume(_ id: Int32, index: Dictionary<Int32, NGHTTP2Output>.Index) {
    if self.outputs.values[index].deferred, let session = self.session {
      self.outputs.values[index].deferred = false
      _ = nghttp2_session_resume_data(session, id)
    }
    self.turn.flushSoon()
  }

  private func readData(
    session: OpaquePointer,
    id: Int32,
    into buffer: UnsafeMutablePointer<UInt8>,
    length: Int,
    flags: UnsafeMutablePointer<UInt32>
  ) -> Int {
    guard let index = self.outputs.index(forKey: id) else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
    let pull = self.outputs.values[index].pull(into: buffer, length: length, flags: flags)
    if pull.counted > 0, let delegate = self.delegates[id] { self.took.append((delegate, pull.counted)) }
    return pull.result
  }

  // MARK: - Channel

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.turn.attach(self)
    var callbacks: OpaquePointer?
    guard nghttp2_session_callbacks_new(&callbacks) == 0 else { return self.fail("nghttp2 could not start") }
    defer { nghttp2_session_callbacks_del(callbacks) }
    Self.install(callbacks)
    var options: OpaquePointer?
    guard nghttp2_option_new(&options) == 0 else { return self.fail("nghttp2 could not start") }
    defer { nghttp2_option_del(options) }
    nghttp2_option_set_no_auto_window_update(options, 1)
    nghttp2_option_set_no_closed_streams(options, 1)
    let userData = Unmanaged.passUnretained(self).toOpaque()
    guard nghttp2_session_client_new2(&self.session, callbacks, userData, options) == 0, let session = self.session
    else { return self.fail("nghttp2 could not start") }
    var entries = [
      nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
      nghttp2_settings_entry(
        settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(Self.streamWindow)),
      nghttp2_settings_entry(
        settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(Self.maxHeaderListBytes)),
    ]
    _ = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
    _ = nghttp2_session_set_local_window_size(
      session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(Self.connectionWindow))
    if context.channel.isActive { self.becameActive() }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.closeAll("the connection to \(self.address) closed")
    if let session = self.session { nghttp2_session_del(session) }
    self.session = nil
    self.context = nil
    self.turn.detach()
  }

  func channelActive(context: ChannelHandlerContext) {
    self.becameActive()
    context.fireChannelActive()
  }

  private func becameActive() {
    self.turn.flushNow(always: true)
    let ready = self.onReady
    self.onReady = nil
    ready?()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard let session = self.session, !self.closing else { return }
    self.turn.beginRead()
    let bytes = Self.unwrapInboundIn(data)
    let result = bytes.withUnsafeReadableBytes { raw in
      nghttp2_session_mem_recv(session, raw.bindMemory(to: UInt8.self).baseAddress, raw.count)
    }
    if result < 0 {
      let reason = String(cString: nghttp2_strerror(Int32(truncatingIfNeeded: result)))
      self.logger.debug(
        "Upstream connection error", metadata: ["sluice.upstream": "\(self.address)", "sluice.error": "\(reason)"])
      self.closing = true
      self.turn.flushNow(always: true)
      self.fail("the upstream \(self.address) broke HTTP/2: \(reason)")
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    self.turn.endRead(always: true)
    context.fireChannelReadComplete()
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable { self.turn.flushSoon() }
    context.fireChannelWritabilityChanged()
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.closeAll("the connection to \(self.address) closed")
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    self.fail("the connection to \(self.address) failed: \(error)")
  }

  /// Drains what the session has to send into one buffer and writes it, while the socket takes it.
  func flushConnection() {
    guard let session = self.session, let context = self.context else { return }
    guard context.channel.isWritable || self.closing else { return }
    if let out = NGHTTP2Drain.output(of: session, allocator: context.channel.allocator) {
      context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
    }
    if !self.took.isEmpty {
      let took = self.took
      self.took.removeAll(keepingCapacity: true)
      self.inCallback {
        for (delegate, bytes) in took { delegate.upstreamTook(bytes) }
      }
    }
    if nghttp2_session_want_read(session) == 0, nghttp2_session_want_write(session) == 0 {
      self.fail(nil)
    } else if self.goingAway, self.delegates.isEmpty {
      self.fail(nil)
    }
  }

  /// Closes the connection; its open streams end with `error`'s text (UNAVAILABLE).
  private func fail(_ error: String?) {
    self.closing = true
    self.stopTakingStreams(error)
    self.closeAll(error ?? "the connection to \(self.address) closed")
    self.context?.close(promise: nil)
  }

  private func stopTakingStreams(_ error: String?) {
    self.goingAway = true
    let gone = self.onGone
    self.onGone = nil
    self.onReady = nil
    gone?(error)
  }

  private func closeAll(_ detail: String) {
    self.stopTakingStreams(detail)
    let delegates = self.delegates.values
    self.delegates.removeAll()
    self.outputs.removeAll()
    self.turn.reset()
    for delegate in delegates { delegate.upstreamClosed(.connectionLost(detail)) }
  }

  // MARK: - Receiving (nghttp2's callbacks)

  private func frameReceived(type: UInt8, flags: UInt8, id: Int32) {
    let endStream = flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
    switch UInt32(type) {
    case NGHTTP2_HEADERS.rawValue:
      guard let headers = self.incoming.finish(id) else { return }
      self.delegates[id]?.upstreamHeaders(headers, endStream: endStream)
      if endStream {
        self.delegates.removeValue(forKey: id)?.upstreamClosed(nil)
        self.outputs[id] = nil
      }
    case NGHTTP2_DATA.rawValue:
      if endStream {
        // DATA with END_STREAM: a response without trailers, which gRPC does not allow.
        self.delegates.removeValue(forKey: id)?.upstreamClosed(.reset(NGHTTP2_PROTOCOL_ERROR.rawValue))
        self.outputs[id] = nil
      }
    case NGHTTP2_GOAWAY.rawValue:
      // Streams above the upstream's last one are closed by nghttp2 (REFUSED_STREAM); the rest
      // go on. New calls go to a new connection.
      self.stopTakingStreams(nil)
      self.turn.flushSoon()
    default:
      break
    }
  }

  private func dataReceived(session: OpaquePointer, id: Int32, data: UnsafeBufferPointer<UInt8>) {
    _ = nghttp2_session_consume_connection(session, data.count)
    guard let delegate = self.delegates[id], let context = self.context else {
      _ = nghttp2_session_consume_stream(session, id, data.count)
      return
    }
    var bytes = context.channel.allocator.buffer(capacity: data.count)
    bytes.writeBytes(data)
    delegate.upstreamData(bytes, length: data.count)
  }

  /// One response header field; false (the stream is reset, its call told why) past
  /// `maxHeaderListBytes`.
  private func header(id: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Bool {
    guard self.incoming.add(id, name: name, value: value) else {
      self.outputs[id] = nil
      self.delegates.removeValue(forKey: id)?.upstreamClosed(.headersTooLarge)
      return false
    }
    return true
  }

  private func streamClosed(id: Int32, errorCode: UInt32) {
    self.incoming.drop(id)
    self.outputs[id] = nil
    guard let delegate = self.delegates.removeValue(forKey: id) else { return }
    delegate.upstreamClosed(.reset(errorCode))
  }

  private static func install(_ callbacks: OpaquePointer?) {
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
      guard let frame, let userData else { return 0 }
      UpstreamConnection.connection(userData).incoming.begin(frame.pointee.hd.stream_id)
      return 0
    }
    nghttp2_session_callbacks_set_on_header_callback(callbacks) {
      _, frame, name, nameLength, value, valueLength, _, userData in
      guard let frame, let name, let value, let userData else { return 0 }
      let accepted = UpstreamConnection.connection(userData).header(
        id: frame.pointee.hd.stream_id,
        name: UnsafeBufferPointer(start: name, count: nameLength),
        value: UnsafeBufferPointer(start: value, count: valueLength)
      )
      return accepted ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
    }
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
      guard let frame, let userData else { return 0 }
      let header = frame.pointee.hd
      UpstreamConnection.connection(userData).frameReceived(
        type: header.type, flags: header.flags, id: header.stream_id)
      return 0
    }
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { session, _, id, data, length, userData in
      guard let session, let data, let userData else { return 0 }
      UpstreamConnection.connection(userData).dataReceived(
        session: session, id: id, data: UnsafeBufferPointer(start: data, count: length))
      return 0
    }
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, id, errorCode, userData in
      guard let userData else { return 0 }
      UpstreamConnection.connection(userData).streamClosed(id: id, errorCode: errorCode)
      return 0
    }
  }

  private static func connection(_ userData: UnsafeMutableRawPointer) -> UpstreamConnection {
    Unmanaged<UpstreamConnection>.fromOpaque(userData).takeUnretainedValue()
  }
}

internal import CNGHTTP2
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP2

/// What an `HTTP2Session` tells the connection that owns it (the native port's server connection,
/// or an upstream client connection). Every method is called on the connection's event loop, from
/// inside one of the session's own calls (`receive`, `drain`).
protocol HTTP2SessionDelegate: AnyObject {
  /// A whole header block: request headers (server), response headers or trailers (client), or a
  /// client's trailers. `endStream` when the HEADERS frame ended the stream.
  func http2Headers(_ headers: HPACKHeaders, endStream: Bool, stream: Int32)
  /// A chunk of DATA. The connection's window is already returned; the stream's is returned with
  /// `HTTP2Session.consumed` once the bytes are taken. False: no one takes them (the session
  /// returns the stream's window itself).
  func http2Data(_ bytes: ByteBuffer, stream: Int32) -> Bool
  /// A DATA frame with END_STREAM arrived (after its bytes).
  func http2DataEnded(stream: Int32)
  /// A header block went past the session's `maxHeaderListSize`: the stream is being reset.
  func http2HeadersRefused(stream: Int32)
  /// The peer sent a PING (not an acknowledgement).
  func http2Ping()
  /// The peer sent GOAWAY.
  func http2GoAway()
  /// nghttp2 pulled `bytes` of DATA queued with `counted: true` on `stream` (it is leaving).
  func http2Sent(_ bytes: Int, stream: Int32)
  /// The stream closed (`errorCode` 0 for a clean end, else the RST_STREAM or GOAWAY code).
  func http2StreamClosed(_ stream: Int32, errorCode: UInt32)
}

/// One HTTP/2 session on libnghttp2, for either side of a connection: the one owner of the C
/// session, its callbacks, the header blocks being received, each stream's outgoing DATA and the
/// drain of what the session has to send. The server connection (`GRPCServerConnection`) and the
/// upstream client (`UpstreamConnection`) are built on it, the way Envoy's `ServerConnectionImpl`
/// and `ClientConnectionImpl` share one `ConnectionImpl`; all of the gateway's unsafe code for
/// HTTP/2 is in this folder.
///
/// Why by hand around a C library: measured on the unary benchmark, swift-nio-http2 spent about
/// 21 µs of CPU per call in the HTTP/2 layer (grpc-go's whole server: 16.5 µs), nghttp2 about 3 µs.
/// nghttp2 does the protocol (framing, HPACK, stream states, flow-control windows, the RFC's header
/// and message checks, SETTINGS and PING answers, flood limits); this type does what it leaves to
/// the application:
/// - windows are returned by hand (`NO_AUTO_WINDOW_UPDATE`): the connection's on receipt, a
///   stream's as its reader takes the DATA (`consumed`), so a reader that stops holds its stream's
///   window shut;
/// - each stream's DATA waits in an `NGHTTP2Output` that nghttp2 pulls through one data source as
///   windows allow (deferred while it is empty), then ends with trailers or END_STREAM;
/// - closed streams are not kept (`NO_CLOSED_STREAMS`): nghttp2 would keep as many as
///   SETTINGS_MAX_CONCURRENT_STREAMS allows in its priority tree, about 250 bytes each (with
///   grpc-go's unlimited default, a long-lived connection grew by 2.5 MB per 10,000 calls); gRPC
///   peers send no priorities.
final class HTTP2Session {
  /// Which side of the connection this session is.
  enum Role {
    case server
    case client
  }

  /// SETTINGS sent in the preface, and the connection's receive window.
  struct Settings {
    var maxConcurrentStreams: Int?
    var initialWindowSize: Int
    var maxFrameSize: Int?
    var maxHeaderListSize: Int
    var enablePush: Bool?
    /// The connection's receive window (at least the protocol's 65,535).
    var connectionWindow: Int
    /// Regular header fields whose name or value has characters HTTP does not allow (controls,
    /// DEL) are kept instead of resetting the stream. Only for a client that shows what a server
    /// sent, escaped (`sluice call`); the gateway never forwards such a field.
    var keepsInvalidFields = false
  }

  /// nghttp2 could not create the session (out of memory).
  struct StartError: Error {}

  private unowned let delegate: any HTTP2SessionDelegate
  private let allocator: ByteBufferAllocator
  private var session: OpaquePointer?
  private var outputs: [Int32: NGHTTP2Output] = [:]
  private var incoming: NGHTTP2IncomingHeaders
  private var headerScratch = NGHTTP2HeaderScratch()
  /// Frames received so far (a peer that sent none has not spoken HTTP/2 yet).
  private(set) var framesReceived = 0

  init(role: Role, settings: Settings, delegate: any HTTP2SessionDelegate, allocator: ByteBufferAllocator) throws {
    self.delegate = delegate
    self.allocator = allocator
    self.incoming = NGHTTP2IncomingHeaders(limit: settings.maxHeaderListSize)
    var callbacks: OpaquePointer?
    guard nghttp2_session_callbacks_new(&callbacks) == 0 else { throw StartError() }
    defer { nghttp2_session_callbacks_del(callbacks) }
    Self.install(callbacks)
    if settings.keepsInvalidFields { Self.installKeepingInvalidFields(callbacks) }
    var options: OpaquePointer?
    guard nghttp2_option_new(&options) == 0 else { throw StartError() }
    defer { nghttp2_option_del(options) }
    nghttp2_option_set_no_auto_window_update(options, 1)
    nghttp2_option_set_no_closed_streams(options, 1)
    let userData = Unmanaged.passUnretained(self).toOpaque()
    let created =
      switch role {
      case .server: nghttp2_session_server_new2(&self.session, callbacks, userData, options)
      case .client: nghttp2_session_client_new2(&self.session, callbacks, userData, options)
      }
    guard created == 0, let session = self.session else { throw StartError() }
    var entries: [nghttp2_settings_entry] = []
    func add(_ id: nghttp2_settings_id, _ value: Int) {
      entries.append(nghttp2_settings_entry(settings_id: Int32(id.rawValue), value: UInt32(clamping: value)))
    }
    if let push = settings.enablePush { add(NGHTTP2_SETTINGS_ENABLE_PUSH, push ? 1 : 0) }
    if let streams = settings.maxConcurrentStreams { add(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, streams) }
    add(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings.initialWindowSize)
    if let frame = settings.maxFrameSize { add(NGHTTP2_SETTINGS_MAX_FRAME_SIZE, frame) }
    add(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings.maxHeaderListSize)
    _ = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
    _ = nghttp2_session_set_local_window_size(
      session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(clamping: max(settings.connectionWindow, 65_535)))
  }

  deinit {
    if let session = self.session { nghttp2_session_del(session) }
  }

  /// Frees the C session; every later call does nothing.
  func close() {
    if let session = self.session { nghttp2_session_del(session) }
    self.session = nil
    self.outputs.removeAll()
  }

  // MARK: - Reading and writing the connection

  /// Feeds bytes read from the socket; nil, or why the connection is broken (nghttp2 has then
  /// queued its GOAWAY: drain it, then close).
  func receive(_ bytes: ByteBuffer) -> String? {
    guard let session = self.session else { return nil }
    let result = bytes.withUnsafeReadableBytes { raw in
      nghttp2_session_mem_recv(session, raw.bindMemory(to: UInt8.self).baseAddress, raw.count)
    }
    guard result < 0 else { return nil }
    return String(cString: nghttp2_strerror(Int32(truncatingIfNeeded: result)))
  }

  /// Everything the session has to send now, in one buffer; nil when it has nothing. The streams'
  /// DATA is pulled here (`http2Sent` tells of counted bytes).
  func drain() -> ByteBuffer? {
    guard let session = self.session else { return nil }
    var out: ByteBuffer?
    while true {
      var bytes: UnsafePointer<UInt8>?
      let count = nghttp2_session_mem_send(session, &bytes)
      guard count > 0, let bytes else { break }
      if out == nil { out = self.allocator.buffer(capacity: max(count, 4096)) }
      out?.writeBytes(UnsafeRawBufferPointer(start: bytes, count: count))
    }
    return out
  }

  /// Neither side wants anything more of the connection (both sent GOAWAY, or a fatal error).
  var isFinished: Bool {
    guard let session = self.session else { return true }
    return nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0
  }

  /// The session has frames waiting to be drained.
  var wantsWrite: Bool {
    guard let session = self.session else { return false }
    return nghttp2_session_want_write(session) != 0
  }

  // MARK: - Streams

  /// Client: opens a stream with `headers` (pseudo-headers first) and a data source that waits
  /// for `send` and `end`. Nil when the session refuses; `outOfIDs` when it never will again.
  func openStream(_ headers: HPACKHeaders) -> (id: Int32?, outOfIDs: Bool) {
    guard let session = self.session else { return (nil, false) }
    var source = nghttp2_data_provider()
    source.read_callback = Self.readCallback
    let id = self.headerScratch.withNameValues(headers) { nva, count in
      nghttp2_submit_request(session, nil, nva, count, &source, nil)
    }
    guard id > 0 else { return (nil, id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE.rawValue) }
    var output = NGHTTP2Output()
    output.sourceSubmitted = true
    self.outputs[id] = output
    return (id, false)
  }

  /// Sends a header block; with `endStream`, trailers that follow any DATA still queued.
  func sendHeaders(_ headers: HPACKHeaders, endStream: Bool, on id: Int32) {
    guard let session = self.session else { return }
    if endStream, let index = self.outputs.index(forKey: id), self.outputs.values[index].sourceSubmitted {
      // DATA is still flowing through the data source: the trailers follow it.
      self.outputs.values[index].ending = .trailers(headers)
      self.resume(id, index: index)
      return
    }
    let flags = endStream ? UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) : UInt8(NGHTTP2_FLAG_NONE.rawValue)
    _ = self.headerScratch.withNameValues(headers) { nva, count in
      nghttp2_submit_headers(session, flags, id, nil, nva, count, nil)
    }
  }

  /// Queues DATA on a stream; `counted` bytes are told to `http2Sent` as nghttp2 pulls them.
  func sendData(_ bytes: ByteBuffer, counted: Bool, on id: Int32) {
    guard let session = self.session else { return }
    if self.outputs[id] == nil { self.outputs[id] = NGHTTP2Output() }
    guard let index = self.outputs.index(forKey: id) else { return }
    // Mutated in place: a copy of the output would copy its chunk buffer too.
    self.outputs.values[index].append(bytes, counted: counted)
    if self.outputs.values[index].sourceSubmitted {
      self.resume(id, index: index)
    } else {
      self.outputs.values[index].sourceSubmitted = true
      var source = nghttp2_data_provider()
      source.read_callback = Self.readCallback
      // END_STREAM here lets the data source end the stream with its last DATA (`end`); it never
      // does on its own: until `ending` is set it defers, and trailers set NO_END_STREAM.
      if nghttp2_submit_data(session, UInt8(NGHTTP2_FLAG_END_STREAM.rawValue), id, &source) != 0 {
        // The stream is gone (closed or reset): nothing will pull these bytes.
        self.outputs[id] = nil
      }
    }
  }

  /// Ends the stream with its last DATA once the queued DATA is out: a client's half-close, or a
  /// server's response without trailers.
  func end(_ id: Int32) {
    guard let index = self.outputs.index(forKey: id) else { return }
    self.outputs.values[index].ending = .endStream
    self.resume(id, index: index)
  }

  /// Resets a stream; its queued DATA is dropped.
  func reset(_ id: Int32, code: HTTP2ErrorCode) {
    guard let session = self.session else { return }
    self.outputs[id] = nil
    _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, UInt32(code.networkCode))
  }

  /// The peer has ended its side of the stream (or the stream is gone).
  func isRemoteClosed(_ id: Int32) -> Bool {
    guard let session = self.session else { return true }
    return nghttp2_session_get_stream_remote_close(session, id) != 0
  }

  /// The reader took `bytes` of a stream's DATA: the peer may send that much more.
  func consumed(_ bytes: Int, on id: Int32) {
    guard let session = self.session, bytes > 0 else { return }
    _ = nghttp2_session_consume_stream(session, id, bytes)
  }

  private func resume(_ id: Int32, index: Dictionary<Int32, NGHTTP2Output>.Index) {
    guard self.outputs.values[index].deferred, let session = self.session else { return }
    self.outputs.values[index].deferred = false
    _ = nghttp2_session_resume_data(session, id)
  }

  // MARK: - Connection frames

  /// A PING (keepalive).
  func ping() {
    guard let session = self.session else { return }
    _ = nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil)
  }

  /// Server: the first GOAWAY of a graceful shutdown (the highest stream ID: streams still open
  /// while it travels).
  func shutdownNotice() {
    guard let session = self.session else { return }
    _ = nghttp2_submit_shutdown_notice(session)
  }

  /// GOAWAY naming the last stream the session processed.
  func goAway(_ code: HTTP2ErrorCode, reason: String = "") {
    guard let session = self.session else { return }
    let reason = Array(reason.utf8)
    _ = reason.withUnsafeBufferPointer { bytes in
      nghttp2_submit_goaway(
        session,
        UInt8(NGHTTP2_FLAG_NONE.rawValue),
        nghttp2_session_get_last_proc_stream_id(session),
        UInt32(code.networkCode),
        bytes.baseAddress,
        bytes.count
      )
    }
  }

  // MARK: - nghttp2's callbacks

  /// nghttp2 pulls up to `length` bytes of a stream's DATA.
  private func readData(
    session: OpaquePointer,
    id: Int32,
    into buffer: UnsafeMutablePointer<UInt8>,
    length: Int,
    flags: UnsafeMutablePointer<UInt32>
  ) -> Int {
    guard let index = self.outputs.index(forKey: id) else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
    // In place (see sendData).
    let pull = self.outputs.values[index].pull(into: buffer, length: length, flags: flags)
    if pull.counted > 0 { self.delegate.http2Sent(pull.counted, stream: id) }
    if let trailers = pull.trailers {
      _ = self.headerScratch.withNameValues(trailers) { nva, count in nghttp2_submit_trailer(session, id, nva, count) }
    }
    return pull.result
  }

  private static let readCallback: nghttp2_data_source_read_callback = {
    session, id, buffer, length, flags, _, userData in
    guard let session, let userData, let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return HTTP2Session.session(userData).readData(session: session, id: id, into: buffer, length: length, flags: flags)
  }

  /// One header field; false (the stream is reset) past `maxHeaderListSize`.
  private func header(id: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Bool {
    guard self.incoming.add(id, name: name, value: value) else {
      self.delegate.http2HeadersRefused(stream: id)
      return false
    }
    return true
  }

  private func frameReceived(type: UInt8, flags: UInt8, id: Int32) {
    self.framesReceived &+= 1
    let endStream = flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
    switch UInt32(type) {
    case NGHTTP2_HEADERS.rawValue:
      guard let headers = self.incoming.finish(id) else { return }
      self.delegate.http2Headers(headers, endStream: endStream, stream: id)
    case NGHTTP2_DATA.rawValue:
      if endStream { self.delegate.http2DataEnded(stream: id) }
    case NGHTTP2_PING.rawValue:
      if flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 { self.delegate.http2Ping() }
    case NGHTTP2_GOAWAY.rawValue:
      self.delegate.http2GoAway()
    default:
      break
    }
  }

  private func dataReceived(session: OpaquePointer, id: Int32, data: UnsafeBufferPointer<UInt8>) {
    // The connection's window is returned on receipt, whichever stream the DATA is for; the
    // stream's as its reader takes it.
    _ = nghttp2_session_consume_connection(session, data.count)
    var bytes = self.allocator.buffer(capacity: data.count)
    bytes.writeBytes(data)
    if !self.delegate.http2Data(bytes, stream: id) {
      _ = nghttp2_session_consume_stream(session, id, data.count)
    }
  }

  private func streamClosed(id: Int32, errorCode: UInt32) {
    self.incoming.drop(id)
    self.outputs[id] = nil
    self.delegate.http2StreamClosed(id, errorCode: errorCode)
  }

  private static func install(_ callbacks: OpaquePointer?) {
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
      guard let frame, let userData else { return 0 }
      HTTP2Session.session(userData).incoming.begin(frame.pointee.hd.stream_id)
      return 0
    }
    nghttp2_session_callbacks_set_on_header_callback(callbacks, Self.headerCallback)
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
      guard let frame, let userData else { return 0 }
      let header = frame.pointee.hd
      HTTP2Session.session(userData).frameReceived(type: header.type, flags: header.flags, id: header.stream_id)
      return 0
    }
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { session, _, id, data, length, userData in
      guard let session, let data, let userData else { return 0 }
      HTTP2Session.session(userData).dataReceived(
        session: session, id: id, data: UnsafeBufferPointer(start: data, count: length))
      return 0
    }
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, id, errorCode, userData in
      guard let userData else { return 0 }
      HTTP2Session.session(userData).streamClosed(id: id, errorCode: errorCode)
      return 0
    }
  }

  /// One header field, kept (0), or refused past `maxHeaderListSize` (the stream is reset).
  private static let headerCallback: nghttp2_on_header_callback = {
    _, frame, name, nameLength, value, valueLength, _, userData in
    guard let frame, let name, let value, let userData else { return 0 }
    let accepted = HTTP2Session.session(userData).header(
      id: frame.pointee.hd.stream_id,
      name: UnsafeBufferPointer(start: name, count: nameLength),
      value: UnsafeBufferPointer(start: value, count: valueLength)
    )
    return accepted ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
  }

  /// nghttp2 hands regular fields it finds invalid (never pseudo-headers or upper-case names) to
  /// this callback; returning 0 skips them without a reset, and `headerCallback` keeps them.
  private static func installKeepingInvalidFields(_ callbacks: OpaquePointer?) {
    nghttp2_session_callbacks_set_on_invalid_header_callback(callbacks, Self.headerCallback)
  }

  private static func session(_ userData: UnsafeMutableRawPointer) -> HTTP2Session {
    Unmanaged<HTTP2Session>.fromOpaque(userData).takeUnretainedValue()
  }
}

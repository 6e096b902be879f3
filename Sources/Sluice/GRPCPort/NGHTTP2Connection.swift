internal import CNGHTTP2
internal import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP2

/// One native-port connection with libnghttp2 as its HTTP/2: the connection's bytes go through an
/// nghttp2 server session, and its streams are `GRPCStream`s, on the connection's event loop.
///
/// Why a C library: measured on the unary benchmark, a bare server on swift-nio-http2 spends
/// about 21 µs of CPU per call in the HTTP/2 layer alone (grpc-go's whole server: 16.5 µs), the
/// same server on nghttp2 about 3 µs. nghttp2 does the protocol (framing, HPACK, stream states,
/// flow-control windows, the RFC's header and message checks, SETTINGS and PING answers, flood
/// limits); this handler does what it leaves to the application, by hand:
/// - reads feed `nghttp2_session_mem_recv`; what the session has to send is drained with
///   `nghttp2_session_mem_send` once per loop turn (and only while the socket takes it) and
///   written as one buffer;
/// - receive windows are returned as DATA is consumed (`NO_AUTO_WINDOW_UPDATE`): the
///   connection's on receipt, a stream's as its call takes the DATA, so a stream that is not
///   writable holds its window shut;
/// - responses: HEADERS with `nghttp2_submit_headers`; DATA through one data source per stream
///   that nghttp2 pulls as windows allow (deferred while the stream has nothing queued), with the
///   trailers submitted when it runs dry after the call ended; a stream's DATA counts against its
///   writability until nghttp2 has pulled it;
/// - grpc-go's PING policy, the handshake timeout, idle and age limits, keepalive PINGs, and the
///   two-phase GOAWAY of a graceful shutdown.
final class NGHTTP2Connection: ChannelDuplexHandler, TurnFlushing {
  typealias InboundIn = ByteBuffer
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  /// The connection's HTTP/2 settings and timers.
  struct Settings {
    var maxConcurrentStreams: Int
    var initialWindowSize: Int
    var maxFrameSize: Int
    var maxHeaderListSize: Int
    var handshakeTimeout: TimeAmount
    var maxIdle: TimeAmount?
    var maxAge: TimeAmount?
    var maxAgeGrace: TimeAmount?
    var keepaliveInterval: TimeAmount = .hours(2)
    var keepaliveTimeout: TimeAmount = .seconds(20)
  }

  let port: RPCEngine
  let eventLoop: any EventLoop
  let allocator: ByteBufferAllocator
  let remoteAddress: SocketAddress?
  private let settings: Settings

  private var session: OpaquePointer?
  private var context: ChannelHandlerContext?
  private var streams: [Int32: GRPCStream] = [:]
  private var outputs: [Int32: NGHTTP2Output] = [:]
  /// Request headers being received, by stream (`--grpc-max-header-list-size`).
  private var incoming: NGHTTP2IncomingHeaders
  /// Counted bytes nghttp2 pulled during one `mem_send` drain, told to the streams after it.
  private var pulled: [(GRPCStream, Int)] = []
  let turn: ConnectionTurn
  private var closing = false

  private var pingPolicy = PingPolicy()
  private var sentSinceLastPing = false
  private var handshakeTimer: Scheduled<Void>?
  private var idleTimer: Scheduled<Void>?
  private var ageTimer: Scheduled<Void>?
  private var graceTimer: Scheduled<Void>?
  private var keepaliveTimer: Scheduled<Void>?
  private var keepaliveAckTimer: Scheduled<Void>?
  private var goAwayTimer: Scheduled<Void>?
  /// When the connection last read bytes (keepalive) and last had no stream open (idle).
  private var lastRead = NIODeadline.now()
  private var idleSince: NIODeadline? = .now()
  private var headerScratch = NGHTTP2HeaderScratch()
  /// A graceful shutdown began: the first GOAWAY (shutdown notice) is out.
  private var draining = false
  /// Streams that wait for a request message due within `--body-timeout` (some may have stopped
  /// waiting: pruned after each read), and the one timer that checks them.
  private var bodyWatch: [GRPCStream] = []
  private var bodyTimer: Scheduled<Void>?

  init(port: RPCEngine, channel: any Channel, settings: Settings) {
    self.port = port
    self.eventLoop = channel.eventLoop
    self.allocator = channel.allocator
    self.settings = settings
    self.incoming = NGHTTP2IncomingHeaders(limit: settings.maxHeaderListSize)
    self.remoteAddress = channel.remoteAddress
    self.turn = ConnectionTurn(eventLoop: channel.eventLoop)
  }

  deinit {
    if let session = self.session { nghttp2_session_del(session) }
  }

  // MARK: - What the streams ask of their connection

  func sendHeaders(_ headers: HPACKHeaders, endStream: Bool, on stream: GRPCStream) {
    guard let session = self.session else { return }
    let id = Int32(stream.id)
    if endStream, let index = self.outputs.index(forKey: id), self.outputs.values[index].sourceSubmitted {
      // DATA is still flowing through the data source: the trailers follow it.
      self.outputs.values[index].ending = .trailers(headers)
      self.resume(id)
      return
    }
    let flags = endStream ? UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) : UInt8(NGHTTP2_FLAG_NONE.rawValue)
    _ = self.headerScratch.withNameValues(headers) { nva, count in
      nghttp2_submit_headers(session, flags, id, nil, nva, count, nil)
    }
    self.sentSinceLastPing = true
  }

  func sendData(_ data: ByteBuffer, counted: Bool, on stream: GRPCStream) {
    guard let session = self.session else { return }
    let id = Int32(stream.id)
    if self.outputs[id] == nil { self.outputs[id] = NGHTTP2Output() }
    guard let index = self.outputs.index(forKey: id) else { return }
    // Mutated in place: a copy of the output would copy its chunk buffer too.
    self.outputs.values[index].append(data, counted: counted)
    if !self.outputs.values[index].sourceSubmitted {
      self.outputs.values[index].sourceSubmitted = true
      var source = nghttp2_data_provider()
      source.read_callback = { session, id, buffer, length, flags, _, userData in
        guard let userData, let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
        return NGHTTP2Connection.connection(userData).readData(
          session: session, id: id, into: buffer, length: length, flags: flags)
      }
      _ = nghttp2_submit_data(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, &source)
    } else {
      self.resume(id)
    }
    self.sentSinceLastPing = true
  }

  func sendReset(_ code: HTTP2ErrorCode, on stream: GRPCStream) {
    guard let session = self.session else { return }
    let id = Int32(stream.id)
    // A stream the client has ended too is closed: nothing to reset.
    guard nghttp2_session_get_stream_remote_close(session, id) == 0 else { return }
    _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, UInt32(code.networkCode))
    self.flushSoon()
  }

  func consumed(_ bytes: Int, on stream: GRPCStream) {
    guard let session = self.session else { return }
    _ = nghttp2_session_consume_stream(session, Int32(stream.id), bytes)
    self.flushSoon()
  }

  /// `stream` waits for a request message due within `--body-timeout` (`awaitingSince`).
  func watchBody(_ stream: GRPCStream) {
    self.bodyWatch.append(stream)
    if self.bodyTimer == nil, let since = stream.awaitingSince {
      self.scheduleBodyCheck(at: since + TimeAmount(self.port.bodyTimeout))
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
        self.scheduleBodyCheck(at: earliest + TimeAmount(self.port.bodyTimeout))
      }
    }
  }

  func writeAtFlush(_ stream: GRPCStream) {
    self.turn.writeAtFlush(stream)
  }

  func flushSoon() {
    self.turn.flushSoon()
  }

  func inCallback(_ body: () -> Void) {
    self.turn.inCallback(body)
  }

  private func resume(_ id: Int32) {
    guard let session = self.session, let index = self.outputs.index(forKey: id),
      self.outputs.values[index].deferred
    else { return }
    self.outputs.values[index].deferred = false
    _ = nghttp2_session_resume_data(session, id)
  }

  /// nghttp2 pulls up to `length` bytes of a stream's DATA.
  private func readData(
    session: OpaquePointer?,
    id: Int32,
    into buffer: UnsafeMutablePointer<UInt8>,
    length: Int,
    flags: UnsafeMutablePointer<UInt32>
  ) -> Int {
    guard let index = self.outputs.index(forKey: id) else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
    // In place (see sendData).
    let pull = self.outputs.values[index].pull(into: buffer, length: length, flags: flags)
    if pull.counted > 0, let stream = self.streams[id] { self.pulled.append((stream, pull.counted)) }
    if let trailers = pull.trailers {
      _ = self.headerScratch.withNameValues(trailers) { nva, count in nghttp2_submit_trailer(session, id, nva, count) }
    }
    return pull.result
  }

  // MARK: - Channel

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.turn.attach(self)
    var callbacks: OpaquePointer?
    guard nghttp2_session_callbacks_new(&callbacks) == 0 else {
      context.close(promise: nil)
      return
    }
    defer { nghttp2_session_callbacks_del(callbacks) }
    Self.install(callbacks)
    var options: OpaquePointer?
    guard nghttp2_option_new(&options) == 0 else {
      context.close(promise: nil)
      return
    }
    defer { nghttp2_option_del(options) }
    nghttp2_option_set_no_auto_window_update(options, 1)
    // nghttp2 keeps closed streams in its priority tree, as many as SETTINGS_MAX_CONCURRENT_STREAMS
    // allows: with grpc-go's unlimited default that was every stream a connection ever had, about
    // 250 bytes each (a long-lived connection grew by 2.5 MB per 10,000 calls). gRPC clients send no
    // priorities, so none are kept.
    nghttp2_option_set_no_closed_streams(options, 1)
    let userData = Unmanaged.passUnretained(self).toOpaque()
    guard nghttp2_session_server_new2(&self.session, callbacks, userData, options) == 0, let session = self.session
    else {
      context.close(promise: nil)
      return
    }
    var entries = [
      (NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, self.settings.maxConcurrentStreams),
      (NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, self.settings.initialWindowSize),
      (NGHTTP2_SETTINGS_MAX_FRAME_SIZE, self.settings.maxFrameSize),
      (NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, self.settings.maxHeaderListSize),
    ].map { id, value in
      nghttp2_settings_entry(settings_id: Int32(id.rawValue), value: UInt32(clamping: value))
    }
    _ = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
    _ = nghttp2_session_set_local_window_size(
      session,
      UInt8(NGHTTP2_FLAG_NONE.rawValue),
      0,
      Int32(clamping: max(self.settings.initialWindowSize, 65_535))
    )
    let loop = context.eventLoop.assumeIsolated()
    self.handshakeTimer = loop.scheduleTask(in: self.settings.handshakeTimeout) { self.close() }
    if let maxAge = self.settings.maxAge {
      self.ageTimer = loop.scheduleTask(in: maxAge) { self.beginDraining(grace: self.settings.maxAgeGrace) }
    }
    if let maxIdle = self.settings.maxIdle { self.scheduleIdleCheck(in: maxIdle) }
    self.scheduleKeepalive(in: self.settings.keepaliveInterval)
    if context.channel.isActive { self.flushSoon() }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.closeAll()
    for timer in [
      self.handshakeTimer, self.idleTimer, self.ageTimer, self.graceTimer, self.keepaliveTimer,
      self.keepaliveAckTimer, self.goAwayTimer, self.bodyTimer,
    ] {
      timer?.cancel()
    }
    if let session = self.session { nghttp2_session_del(session) }
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
    self.lastRead = .now()
    if self.keepaliveAckTimer != nil {
      // Any bytes show the client is there.
      self.keepaliveAckTimer?.cancel()
      self.keepaliveAckTimer = nil
    }
    let bytes = Self.unwrapInboundIn(data)
    let result = bytes.withUnsafeReadableBytes { raw in
      nghttp2_session_mem_recv(session, raw.bindMemory(to: UInt8.self).baseAddress, raw.count)
    }
    if result < 0 {
      // A connection error: nghttp2 has queued its GOAWAY; send it, then close.
      self.port.logger.debug(
        "gRPC connection error",
        metadata: ["sluice.error": "\(String(cString: nghttp2_strerror(Int32(truncatingIfNeeded: result))))"]
      )
      self.closing = true
      self.turn.flushNow(always: true)
      context.close(promise: nil)
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
      self.beginDraining(grace: nil)
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
    self.port.logger.debug("gRPC connection error", metadata: ["sluice.error": "\(error)"])
    self.close()
  }

  // MARK: - Sending

  /// Drains what the session has to send into one buffer and flushes it, while the socket takes
  /// more (the streams' batched DATA went into the session just before, see `ConnectionTurn`).
  func flushConnection() {
    guard let session = self.session, let context = self.context else { return }
    guard context.channel.isWritable || self.closing else { return }
    if let out = NGHTTP2Drain.output(of: session, allocator: context.channel.allocator) {
      context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
    }
    if !self.pulled.isEmpty {
      let pulled = self.pulled
      self.pulled.removeAll(keepingCapacity: true)
      self.inCallback {
        for (stream, bytes) in pulled { stream.wrote(bytes) }
      }
    }
    if nghttp2_session_want_read(session) == 0, nghttp2_session_want_write(session) == 0 {
      self.close()
    } else if self.draining, self.streams.isEmpty, self.goAwayTimer == nil, nghttp2_session_want_write(session) == 0 {
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
    self.outputs.removeAll()
    self.bodyWatch.removeAll()
    self.turn.reset()
    for stream in streams { stream.reset() }
  }

  // MARK: - Connection management

  /// A graceful end: GOAWAY with the highest stream ID (new streams are still accepted while it
  /// travels), then after a second GOAWAY naming the last stream served; open streams go on
  /// (or, on SIGTERM, end as their methods do) and the connection closes when none is left, or
  /// after `grace`.
  private func beginDraining(grace: TimeAmount?) {
    guard let session = self.session, !self.draining else { return }
    self.draining = true
    _ = nghttp2_submit_shutdown_notice(session)
    self.goAwayTimer = self.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) {
      self.goAwayTimer = nil
      guard let session = self.session else { return }
      _ = nghttp2_submit_goaway(
        session,
        UInt8(NGHTTP2_FLAG_NONE.rawValue),
        nghttp2_session_get_last_proc_stream_id(session),
        UInt32(NGHTTP2_NO_ERROR.rawValue),
        nil,
        0
      )
      self.turn.flushNow(always: true)
    }
    if let grace {
      self.graceTimer = self.eventLoop.assumeIsolated().scheduleTask(in: grace) { self.close() }
    }
    self.flushSoon()
  }

  /// Checks, `delay` from now, whether the connection has had no stream for `--grpc-max-
  /// connection-idle`; if so it drains, else the check moves to when it could be.
  private func scheduleIdleCheck(in delay: TimeAmount) {
    self.idleTimer = self.eventLoop.assumeIsolated().scheduleTask(in: delay) {
      guard let maxIdle = self.settings.maxIdle, !self.draining else { return }
      guard let since = self.idleSince else {
        self.scheduleIdleCheck(in: maxIdle)
        return
      }
      let idle = NIODeadline.now() - since
      if idle >= maxIdle {
        self.beginDraining(grace: nil)
      } else {
        self.scheduleIdleCheck(in: maxIdle - idle)
      }
    }
  }

  /// A PING once the connection has read nothing for `keepaliveInterval`; no answer (no bytes
  /// at all) within `keepaliveTimeout` closes it.
  private func scheduleKeepalive(in delay: TimeAmount) {
    self.keepaliveTimer = self.eventLoop.assumeIsolated().scheduleTask(in: delay) {
      let quiet = NIODeadline.now() - self.lastRead
      guard quiet >= self.settings.keepaliveInterval else {
        self.scheduleKeepalive(in: self.settings.keepaliveInterval - quiet)
        return
      }
      guard let session = self.session else { return }
      _ = nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil)
      self.flushSoon()
      self.keepaliveAckTimer = self.eventLoop.assumeIsolated().scheduleTask(in: self.settings.keepaliveTimeout) {
        self.close()
      }
      self.scheduleKeepalive(in: self.settings.keepaliveInterval)
    }
  }

  /// grpc-go's PING policy; on a third strike, GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
  private func receivedPing(session: OpaquePointer) {
    let sent = self.sentSinceLastPing
    self.sentSinceLastPing = false
    guard self.pingPolicy.receivedPing(at: .now(), openStreams: self.streams.count, sentSinceLastPing: sent) else {
      return
    }
    let reason = Array("too_many_pings".utf8)
    _ = reason.withUnsafeBufferPointer { bytes in
      nghttp2_submit_goaway(
        session,
        UInt8(NGHTTP2_FLAG_NONE.rawValue),
        nghttp2_session_get_last_proc_stream_id(session),
        UInt32(NGHTTP2_ENHANCE_YOUR_CALM.rawValue),
        bytes.baseAddress,
        bytes.count
      )
    }
    self.closing = true
    self.turn.flushNow(always: true)
    self.context?.close(promise: nil)
  }

  // MARK: - Receiving (nghttp2's callbacks)

  private func beginHeaders(id: Int32) {
    self.incoming.begin(id)
  }

  /// One header field; false (the stream is reset) past `--grpc-max-header-list-size`.
  private func header(id: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Bool {
    self.incoming.add(id, name: name, value: value)
  }

  private func frameReceived(session: OpaquePointer, type: UInt8, flags: UInt8, id: Int32) {
    self.handshakeTimer?.cancel()
    self.handshakeTimer = nil
    let endStream = flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
    switch UInt32(type) {
    case NGHTTP2_HEADERS.rawValue:
      guard let headers = self.incoming.finish(id) else { return }
      if let stream = self.streams[id] {
        stream.receivedHeaders(headers, endStream: endStream)
      } else {
        let stream = GRPCStream(id: HTTP2StreamID(id), connection: self, port: self.port)
        self.streams[id] = stream
        self.idleSince = nil
        stream.receivedHeaders(headers, endStream: endStream)
      }
    case NGHTTP2_DATA.rawValue:
      if endStream { self.streams[id]?.receivedData(ByteBuffer(), endStream: true, length: 0) }
    case NGHTTP2_PING.rawValue:
      if flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 { self.receivedPing(session: session) }
    default:
      break
    }
  }

  private func dataReceived(session: OpaquePointer, id: Int32, data: UnsafeBufferPointer<UInt8>) {
    // The connection's window is returned on receipt, whichever stream the DATA is for; the
    // stream's as its call consumes it.
    _ = nghttp2_session_consume_connection(session, data.count)
    guard let stream = self.streams[id] else { return }
    var bytes = self.allocator.buffer(capacity: data.count)
    bytes.writeBytes(data)
    stream.receivedData(bytes, endStream: false, length: data.count)
  }

  private func streamClosed(id: Int32) {
    self.incoming.drop(id)
    self.outputs[id] = nil
    self.streams.removeValue(forKey: id)?.reset()
    if self.streams.isEmpty { self.idleSince = .now() }
  }

  private static func install(_ callbacks: OpaquePointer?) {
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
      guard let frame, let userData else { return 0 }
      NGHTTP2Connection.connection(userData).beginHeaders(id: frame.pointee.hd.stream_id)
      return 0
    }
    nghttp2_session_callbacks_set_on_header_callback(callbacks) {
      _, frame, name, nameLength, value, valueLength, _, userData in
      guard let frame, let name, let value, let userData else { return 0 }
      let accepted = NGHTTP2Connection.connection(userData).header(
        id: frame.pointee.hd.stream_id,
        name: UnsafeBufferPointer(start: name, count: nameLength),
        value: UnsafeBufferPointer(start: value, count: valueLength)
      )
      return accepted ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
    }
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { session, frame, userData in
      guard let session, let frame, let userData else { return 0 }
      let header = frame.pointee.hd
      NGHTTP2Connection.connection(userData).frameReceived(
        session: session,
        type: header.type,
        flags: header.flags,
        id: header.stream_id
      )
      return 0
    }
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { session, _, id, data, length, userData in
      guard let session, let data, let userData else { return 0 }
      NGHTTP2Connection.connection(userData).dataReceived(
        session: session, id: id, data: UnsafeBufferPointer(start: data, count: length))
      return 0
    }
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, id, _, userData in
      guard let userData else { return 0 }
      NGHTTP2Connection.connection(userData).streamClosed(id: id)
      return 0
    }
  }

  private static func connection(_ userData: UnsafeMutableRawPointer) -> NGHTTP2Connection {
    Unmanaged<NGHTTP2Connection>.fromOpaque(userData).takeUnretainedValue()
  }
}

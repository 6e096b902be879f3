internal import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP2

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
/// a client `HTTP2Session` (libnghttp2, the native port's session) fed the connection's bytes, its
/// output drained once per loop turn. Calls on the same loop open streams on it with no hop.
///
/// Flow control is end to end: a stream's receive window is returned only as its call hands the
/// DATA on (`consumed`), so a client that does not read stops the upstream through HTTP/2; the
/// connection's window is returned on receipt. Request DATA waits in nghttp2's data source until
/// the upstream's window takes it, and the call hears how much left (`upstreamTook`).
final class UpstreamConnection: ChannelDuplexHandler, TurnFlushing, HTTP2SessionDelegate {
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
  private var session: HTTP2Session?
  private var context: ChannelHandlerContext?
  private var delegates: [Int32: any UpstreamStreamDelegate] = [:]
  /// Counted bytes nghttp2 pulled during one drain, told to the calls after it.
  private var took: [(any UpstreamStreamDelegate, Int)] = []
  let turn: ConnectionTurn
  private var closing = false
  /// The upstream sent GOAWAY: no new streams.
  private(set) var goingAway = false
  /// Called once when the connection can take streams (its preface is out), and once when it
  /// can take no more (closed, or GOAWAY); set by the pool.
  var onReady: (() -> Void)?
  var onGone: ((_ error: String?) -> Void)?

  /// With `keepsInvalidFields`, response header fields HTTP does not allow are kept rather than
  /// resetting the stream (see `HTTP2Session.Settings`): only for `sluice call`, which prints
  /// them escaped.
  private let keepsInvalidFields: Bool

  init(address: String, eventLoop: any EventLoop, logger: Logger, keepsInvalidFields: Bool = false) {
    self.keepsInvalidFields = keepsInvalidFields
    self.address = address
    self.eventLoop = eventLoop
    self.logger = logger
    self.turn = ConnectionTurn(eventLoop: eventLoop)
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
    let opened = session.openStream(headers)
    guard let id = opened.id else {
      if opened.outOfIDs { self.stopTakingStreams(nil) }
      return nil
    }
    self.delegates[id] = delegate
    self.turn.flushSoon()
    return id
  }

  /// Queues request DATA on a stream; the delegate hears `upstreamTook` as it leaves.
  func send(_ bytes: ByteBuffer, on id: Int32) {
    self.session?.sendData(bytes, counted: true, on: id)
    self.turn.flushSoon()
  }

  /// Half-closes a stream once its queued DATA is out.
  func end(_ id: Int32) {
    self.session?.end(id)
    self.turn.flushSoon()
  }

  /// Resets a stream (CANCEL for a call that went away); its delegate hears nothing more.
  func reset(_ id: Int32, code: HTTP2ErrorCode = .cancel) {
    guard let session = self.session, self.delegates.removeValue(forKey: id) != nil else { return }
    session.reset(id, code: code)
    self.turn.flushSoon()
  }

  /// The call handed on `bytes` of a stream's response DATA: the upstream may send that much more.
  func consumed(_ bytes: Int, on id: Int32) {
    guard let session = self.session, bytes > 0 else { return }
    session.consumed(bytes, on: id)
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

  // MARK: - Channel

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.turn.attach(self)
    let settings = HTTP2Session.Settings(
      initialWindowSize: Self.streamWindow,
      maxHeaderListSize: Self.maxHeaderListBytes,
      enablePush: false,
      connectionWindow: Self.connectionWindow,
      keepsInvalidFields: self.keepsInvalidFields
    )
    do {
      self.session = try HTTP2Session(
        role: .client, settings: settings, delegate: self, allocator: context.channel.allocator)
    } catch {
      return self.fail("nghttp2 could not start")
    }
    if context.channel.isActive { self.becameActive() }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.closeAll("the connection to \(self.address) closed")
    self.session?.close()
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
    if let reason = session.receive(Self.unwrapInboundIn(data)) {
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
    if let out = session.drain() {
      context.writeAndFlush(Self.wrapOutboundOut(out), promise: nil)
    }
    if !self.took.isEmpty {
      let took = self.took
      self.took.removeAll(keepingCapacity: true)
      self.inCallback {
        for (delegate, bytes) in took { delegate.upstreamTook(bytes) }
      }
    }
    if session.isFinished {
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
    self.turn.reset()
    for delegate in delegates { delegate.upstreamClosed(.connectionLost(detail)) }
  }

  // MARK: - Receiving (the session's delegate)

  func http2Headers(_ headers: HPACKHeaders, endStream: Bool, stream id: Int32) {
    self.delegates[id]?.upstreamHeaders(headers, endStream: endStream)
    if endStream { self.delegates.removeValue(forKey: id)?.upstreamClosed(nil) }
  }

  func http2Data(_ bytes: ByteBuffer, stream id: Int32) -> Bool {
    guard let delegate = self.delegates[id] else { return false }
    delegate.upstreamData(bytes, length: bytes.readableBytes)
    return true
  }

  /// DATA with END_STREAM: a response without trailers, which gRPC does not allow.
  func http2DataEnded(stream id: Int32) {
    self.delegates.removeValue(forKey: id)?.upstreamClosed(.reset(UInt32(HTTP2ErrorCode.protocolError.networkCode)))
  }

  /// A response header block past `maxHeaderListBytes`: the session resets the stream, and its
  /// call is told why.
  func http2HeadersRefused(stream id: Int32) {
    self.delegates.removeValue(forKey: id)?.upstreamClosed(.headersTooLarge)
  }

  func http2Ping() {}

  /// Streams above the upstream's last one are closed by nghttp2 (REFUSED_STREAM); the rest go
  /// on. New calls go to a new connection.
  func http2GoAway() {
    self.stopTakingStreams(nil)
    self.turn.flushSoon()
  }

  func http2Sent(_ bytes: Int, stream id: Int32) {
    if let delegate = self.delegates[id] { self.took.append((delegate, bytes)) }
  }

  func http2StreamClosed(_ id: Int32, errorCode: UInt32) {
    self.delegates.removeValue(forKey: id)?.upstreamClosed(.reset(errorCode))
  }
}

internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP1
internal import NIOHTTP2

/// What a native-port connection (`GRPCServerConnection`) asks of each of its streams: a native
/// gRPC call (`GRPCStream`) or a request of another protocol (`HTTP2ExchangeStream`).
protocol HTTP2ServerStream: AnyObject {
  var id: HTTP2StreamID { get }
  func receivedHeaders(_ headers: HPACKHeaders, endStream: Bool)
  /// Request DATA; `length` is its flow-controlled length.
  func receivedData(_ bytes: ByteBuffer, endStream: Bool, length: Int)
  /// The client reset the stream or the connection went away.
  func reset()
  /// A graceful shutdown began.
  func quiesce()
  func connectionBecameWritable()
  /// `bytes` of the stream's counted DATA left the connection.
  func wrote(_ bytes: Int)
}

/// One HTTP/2 stream of the native port whose request is not native gRPC but a protocol the
/// `ExchangeRouter` picks (gRPC-Web): the stream is that call's `HTTPExchange`, on the connection's
/// event loop.
///
/// Flow control as for a native call: body bytes reach the call only while the stream is writable
/// and the call does not hold its requests; until then they are queued and the stream's window
/// stays shut, so a client that sends without reading is held back. Response body bytes are
/// batched into DATA frames of up to 16 KiB, flushed at the end of the loop turn.
final class HTTP2ExchangeStream: HTTP2ServerStream, HTTPExchange, TurnBatched {
  let id: HTTP2StreamID
  private let connection: GRPCServerConnection
  private let router: ExchangeRouter
  private var handler: (any HTTPExchangeHandler)?
  private var started = false
  /// The response head, held until the first body bytes or the end (which then carries it alone,
  /// END_STREAM on the HEADERS: a trailers-only answer).
  private var head: HPACKHeaders?
  private var headSent = false
  private var responseEnded = false
  private var clientEnded = false
  private var resetTimer: Scheduled<Void>?

  private var pending: ByteBuffer?
  private var unsentBytes = 0
  private var belowWatermark = true
  private var requestsHeld = false
  private var waitingForWritability = false
  private var queued = InlineFirstQueue<(bytes: ByteBuffer, endStream: Bool, length: Int)>()

  init(id: HTTP2StreamID, connection: GRPCServerConnection, router: ExchangeRouter) {
    self.id = id
    self.connection = connection
    self.router = router
  }

  // MARK: - Events from the connection

  func receivedHeaders(_ headers: HPACKHeaders, endStream: Bool) {
    if endStream { self.clientEnded = true }
    guard !self.started else {
      // Trailers: only their end matters, in order behind queued DATA.
      if endStream { self.receivedData(ByteBuffer(), endStream: true, length: 0) }
      return
    }
    self.started = true
    guard let request = HTTPExchangeRequest(http2: headers) else {
      self.connection.sendReset(.protocolError, on: self)
      return
    }
    let cors = CORS.headers(origin: request.headers.first(name: "Origin"))
    if let refusal = self.router.originPolicy.refusal(request.headers) {
      self.writeHead(refusal.head.status, headers: refusal.head.headers)
      self.writeBody(self.allocator.buffer(bytes: refusal.body))
      self.endResponse(reusable: false)
      return
    }
    self.handler = self.router.handler(for: request, on: self, cors: cors)
    if endStream { self.deliver(ByteBuffer(), endStream: true, length: 0) }
  }

  func receivedData(_ bytes: ByteBuffer, endStream: Bool, length: Int) {
    if endStream { self.clientEnded = true }
    if self.queued.isEmpty, self.delivering {
      self.deliver(bytes, endStream: endStream, length: length)
    } else if !self.responseEnded {
      self.queued.append((bytes, endStream, length))
      self.waitingForWritability = true
    }
  }

  func reset() {
    self.queued.removeAll()
    self.resetTimer?.cancel()
    self.resetTimer = nil
    let handler = self.handler
    self.handler = nil
    handler?.exchangeGone()
  }

  func quiesce() {
    self.handler?.quiesce()
  }

  func connectionBecameWritable() {
    self.writabilityMayHaveChanged()
  }

  func wrote(_ bytes: Int) {
    self.unsentBytes -= bytes
    if !self.belowWatermark, self.unsentBytes < GRPCStream.lowWatermark {
      self.belowWatermark = true
      self.connection.inCallback { self.writabilityMayHaveChanged() }
    }
  }

  // MARK: - Request body

  private var delivering: Bool { self.belowWatermark && !self.requestsHeld }

  private func deliver(_ bytes: ByteBuffer, endStream: Bool, length: Int) {
    guard let handler = self.handler else { return }
    if bytes.readableBytes > 0 { handler.receivedBody(bytes) }
    if length > 0, !self.clientEnded, self.handler != nil { self.connection.consumed(length, on: self) }
    if endStream, let handler = self.handler {
      handler.receivedEnd()
    }
  }

  private func writabilityMayHaveChanged() {
    guard self.belowWatermark, self.waitingForWritability else { return }
    self.waitingForWritability = false
    while self.delivering, let (bytes, endStream, length) = self.queued.popFirst() {
      self.deliver(bytes, endStream: endStream, length: length)
    }
    if !self.belowWatermark {
      self.waitingForWritability = true
      return
    }
    self.handler?.becameWritable()
  }

  // MARK: - HTTPExchange

  var eventLoop: any EventLoop { self.connection.eventLoop }

  var allocator: ByteBufferAllocator { self.connection.allocator }

  var isWritable: Bool {
    let writable = self.belowWatermark && (self.requestsHeld || self.queued.isEmpty)
    if !writable { self.waitingForWritability = true }
    return writable
  }

  var outputTurn: ConnectionTurn? { self.connection.turn }

  var remoteAddress: SocketAddress? { self.connection.remoteAddress }

  var isSecure: Bool { self.connection.isSecure }

  var isHTTP2: Bool { true }

  func writeHead(_ status: HTTPResponseStatus, headers: HTTPHeaders) {
    guard self.head == nil, !self.headSent, !self.responseEnded else { return }
    var fields = HPACKHeaders()
    fields.reserveCapacity(headers.count + 1)
    fields.add(name: ":status", value: "\(status.code)")
    for (name, value) in headers {
      let name = name.lowercased()
      // Connection-specific fields are not HTTP/2's (RFC 9113 §8.2.2).
      guard !MetadataKeys.isHopByHop(name), name != "content-length" else { continue }
      fields.add(name: name, value: value)
    }
    self.head = fields
  }

  func writeBody(_ bytes: ByteBuffer) {
    guard !self.responseEnded, bytes.readableBytes > 0 else { return }
    self.sendHead(endStream: false)
    let first = self.pending == nil
    var incoming = bytes
    if var pending = self.pending {
      self.pending = nil  // unique while written to: no copy
      pending.writeBuffer(&incoming)
      self.pending = pending
    } else {
      self.pending = incoming
    }
    if let pending = self.pending, pending.readableBytes >= GRPCStream.batchBytes {
      self.writePending(counted: true)
    } else if first {
      self.connection.writeAtFlush(self)
    }
    self.connection.flushSoon()
  }

  func endResponse(reusable: Bool) {
    guard !self.responseEnded else { return }
    self.responseEnded = true
    if !self.headSent, self.pending == nil {
      self.sendHead(endStream: true)
    } else {
      self.sendHead(endStream: false)
      self.writePending(counted: false)
      self.connection.endStream(on: self)
    }
    self.handler = nil
    self.queued.removeAll()
    if !self.clientEnded {
      // The client is still sending: as a native call does, RST_STREAM(NO_ERROR) after a grace.
      self.resetTimer = self.eventLoop.assumeIsolated().scheduleTask(in: GRPCStream.resetGrace) {
        self.resetTimer = nil
        guard !self.clientEnded else { return }
        self.connection.inCallback { self.connection.sendReset(.noError, on: self) }
      }
    }
    self.connection.flushSoon()
  }

  func holdRequests(_ hold: Bool) {
    guard hold != self.requestsHeld else { return }
    self.requestsHeld = hold
    if !hold {
      self.waitingForWritability = true
      self.connection.inCallback { self.writabilityMayHaveChanged() }
    }
  }

  func flushSoon() {
    self.connection.flushSoon()
  }

  func inCallback(_ body: () -> Void) {
    self.connection.inCallback(body)
  }

  // MARK: - Writing

  private func sendHead(endStream: Bool) {
    guard !self.headSent, let head = self.head else { return }
    self.headSent = true
    self.head = nil
    self.connection.sendHeaders(head, endStream: endStream, on: self)
  }

  func writePending() {
    self.writePending(counted: true)
  }

  private func writePending(counted: Bool) {
    guard let pending = self.pending, pending.readableBytes > 0 else { return }
    self.pending = nil
    if counted {
      self.unsentBytes += pending.readableBytes
      if self.unsentBytes >= GRPCStream.highWatermark { self.belowWatermark = false }
    }
    self.connection.sendData(pending, counted: counted, on: self)
  }
}

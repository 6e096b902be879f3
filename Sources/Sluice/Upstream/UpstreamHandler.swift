internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP2

/// One call forwarded to an upstream gRPC server, as the engine's handler of a proxied method:
/// whichever front end the call came in on, its request messages go to an HTTP/2 stream on an
/// `UpstreamConnection` of the call's own event loop, and the upstream's headers, messages,
/// status and trailers come back through the call's responder unchanged. Messages are passed
/// as bytes, never decoded here (the JSON front ends translate them as for hosted methods).
///
/// End to end: the deadline goes upstream as a `grpc-timeout` shortened by the time already spent;
/// a call that stops (client gone, deadline, shutdown) resets the upstream stream at once; an
/// upstream reset or lost connection ends the call with its status; a client that does not read
/// leaves the upstream's DATA unconsumed (its window shuts), and an upstream that does not read
/// holds the client's requests back (`holdRequests`) once `highWatermark` bytes wait for it.
final class UpstreamHandler: FramedRPCHandler, UpstreamStreamDelegate, TurnBatched {
  /// Request bytes waiting for the upstream before the client is held back, and below which it
  /// is let go again.
  static let highWatermark = 256 << 10
  static let lowWatermark = 64 << 10

  private let cluster: UpstreamCluster
  private let path: String
  private let maximumMessageBytes: Int
  private var call: ServerCall?
  /// The call's transport, when it takes response messages still framed (the native port).
  private var framedResponder: (any FramedCallResponder)?
  private var connection: UpstreamConnection?
  private var stream: Int32?
  /// Request messages framed before the stream opened.
  private var pending = ByteBuffer()
  /// Request messages framed in this turn, handed to the stream at the upstream's flush.
  private var batch: ByteBuffer?
  private var requestEnded = false
  /// Request bytes handed over and not yet taken by the upstream's window.
  private var outstanding = 0
  private var holding = false
  /// Response DATA that arrived while the call could not take it (with its window size).
  private var held = InlineFirstQueue<(bytes: ByteBuffer, length: Int)>()
  private var deframer: GRPCMessageDeframer
  private var responseStarted = false
  private var gzipResponses = false
  /// The upstream's status, kept until `held` is delivered.
  private var ending: (error: RPCError?, trailers: HPACKHeaders)?
  private var over = false

  init(cluster: UpstreamCluster, path: String, maximumMessageBytes: Int) {
    self.cluster = cluster
    self.path = path
    self.maximumMessageBytes = maximumMessageBytes
    self.deframer = GRPCMessageDeframer(maximumMessageBytes: maximumMessageBytes, requests: false)
  }

  // MARK: - RPCHandler

  func start(_ call: ServerCall) -> HPACKHeaders? {
    self.call = call
    self.framedResponder = call.responder as? any FramedCallResponder
    self.cluster.connection(on: call.eventLoop) { result in
      guard !self.over, let call = self.call else { return }
      switch result {
      case .failure(let error):
        self.end(error)
      case .success(let connection):
        let headers = UpstreamMetadata.requestHeaders(
          for: call, path: self.path, authority: self.cluster.authority, secure: self.cluster.secure)
        guard let stream = connection.openStream(headers, delegate: self) else {
          self.end(GRPCErrors.upstreamUnavailable(self.cluster.route.service, "its connection is closing"))
          return
        }
        self.connection = connection
        self.stream = stream
        if self.pending.readableBytes > 0 { connection.send(self.pending, on: stream) }
        self.pending = ByteBuffer()
        if self.requestEnded { connection.end(stream) }
      }
    }
    return nil
  }

  func received(_ message: ByteBuffer, _ call: ServerCall) {
    self.forward(message.readableBytes + 5, call) { $0.writeGRPCMessage(message) }
  }

  /// Request messages still framed (the native port, no message encoding): forwarded as they
  /// came, with no message cut out and framed again.
  func receivedFramed(_ messages: ByteBuffer, count: Int, _ call: ServerCall) {
    self.forward(messages.readableBytes, call) { batch in
      // The first piece of a batch is the client's buffer itself, not a copy of it.
      if batch.readableBytes == 0 { batch = messages } else { batch.writeImmutableBuffer(messages) }
    }
  }

  /// Adds `bytes` of framed request messages (written by `write`) to the turn's batch for the
  /// upstream stream, or to what waits for the stream to open.
  private func forward(_ bytes: Int, _ call: ServerCall, _ write: (inout ByteBuffer) -> Void) {
    self.outstanding += bytes
    if let connection = self.connection, self.stream != nil {
      // Messages of one turn go to the stream as one piece, at the upstream connection's flush.
      // That flush is the loop's next task, after every connection this loop read in the same
      // pass: one write then carries the requests of all the clients read together (one write per
      // client's read before: gRPC-Web unary from 64 h2load clients went 17,400 -> 24,000 calls/s,
      // with one client's latency unchanged).
      if self.batch == nil {
        self.batch = ByteBuffer()
        connection.turn.writeAtFlush(self)
        connection.turn.flushSoon()
      }
      if var batch = self.batch {
        self.batch = nil  // unique while written to: no copy
        write(&batch)
        self.batch = batch
      }
    } else {
      write(&self.pending)
    }
    if !self.holding, self.outstanding >= Self.highWatermark {
      self.holding = true
      call.responder.holdRequests(true)
    }
  }

  func receivedEnd(_ call: ServerCall) {
    self.requestEnded = true
    self.writePending()
    if let connection = self.connection, let stream = self.stream { connection.end(stream) }
  }

  /// Hands the turn's batched request messages to the upstream stream.
  func writePending() {
    guard let batch = self.batch else { return }
    self.batch = nil
    if let connection = self.connection, let stream = self.stream { connection.send(batch, on: stream) }
  }

  func becameWritable(_ call: ServerCall) {
    self.deliverHeld()
  }

  func stopped() {
    self.over = true
    self.batch = nil
    if let connection = self.connection, let stream = self.stream { connection.reset(stream) }
    self.call = nil
    self.framedResponder = nil
  }

  // MARK: - UpstreamStreamDelegate

  func upstreamHeaders(_ headers: HPACKHeaders, endStream: Bool) {
    guard !self.over, let call = self.call else { return }
    if !self.responseStarted {
      if let refusal = UpstreamMetadata.refusal(headers) {
        self.abandon(refusal)
        return
      }
      if !endStream {
        self.responseStarted = true
        self.gzipResponses = headers.first(name: "grpc-encoding") == "gzip"
        call.sendHeaders(UpstreamMetadata.responseMetadata(headers))
        return
      }
    }
    guard endStream else { return }
    self.ending = UpstreamMetadata.status(headers)
    self.deliverHeld()
  }

  func upstreamData(_ bytes: ByteBuffer, length: Int) {
    guard !self.over else { return }
    self.held.append((bytes, length))
    if self.held.count == 1 { self.deliverHeld() }
  }

  func upstreamTook(_ bytes: Int) {
    self.outstanding -= bytes
    if self.holding, self.outstanding < Self.lowWatermark, let call = self.call {
      self.holding = false
      call.responder.holdRequests(false)
    }
  }

  func upstreamClosed(_ reason: UpstreamConnection.CloseReason?) {
    self.stream = nil
    guard !self.over, let reason, self.ending == nil else { return }
    self.end(UpstreamMetadata.error(for: reason, service: self.cluster.route.service))
  }

  // MARK: - Responses

  /// Hands the held response DATA to the call while it is writable, returning the upstream's
  /// window for each piece; then the status, once everything before it is out.
  private func deliverHeld() {
    guard let call = self.call else { return }
    // Written to the client as the upstream's read ends, ahead of the upstream's own frames.
    if let clientTurn = call.responder.outputTurn { self.connection?.turn.flushFirst(clientTurn) }
    while !self.over, call.isWritable, let (bytes, length) = self.held.popFirst() {
      self.deframer.append(bytes)
      do throws(RPCError) {
        if let framed = self.framedResponder, !self.gzipResponses {
          // The native port frames messages as gRPC does: they go to it as the upstream framed
          // them, each one's length checked, none cut out and framed again.
          let messages = try self.deframer.nextFramed()
          if messages.count > 0 { framed.send(framed: messages.bytes, count: messages.count) }
        }
        while !self.over, let message = try self.deframer.next() {
          var payload = message.bytes
          if message.compressed {
            guard self.gzipResponses else { throw GRPCErrors.responseCompressedWithoutEncoding }
            payload = try GzipMessage.inflate(payload, limit: self.maximumMessageBytes)
          }
          call.responder.send(buffer: payload)
        }
      } catch {
        self.abandon(GRPCErrors.upstreamFailed(self.cluster.route.service, error.message))
        return
      }
      if let connection = self.connection, let stream = self.stream { connection.consumed(length, on: stream) }
    }
    guard !self.over, self.held.isEmpty, let (error, trailers) = self.ending else { return }
    guard !self.deframer.hasPartialMessage else {
      // The upstream ended its response inside a message: the message is lost, so its status
      // cannot stand.
      self.end(GRPCErrors.upstreamFailed(self.cluster.route.service, GRPCErrors.truncatedResponse.message))
      return
    }
    self.end(error, trailers: trailers)
  }

  // MARK: - Ending

  /// Ends the call with `error`, its upstream stream reset if it is still open.
  private func abandon(_ error: RPCError) {
    if let connection = self.connection, let stream = self.stream { connection.reset(stream) }
    self.end(error)
  }

  private func end(_ error: RPCError?, trailers: HPACKHeaders = [:]) {
    guard !self.over, let call = self.call else { return }
    self.over = true
    self.held.removeAll()
    self.call = nil
    self.framedResponder = nil
    call.finish(error, trailers: trailers)
  }
}

/// What crosses the proxy in headers, in both directions (README, "Upstreams: metadata").
enum UpstreamMetadata {
  /// Request headers that never go upstream: HTTP/2's and gRPC's own (rewritten here), hop by
  /// hop, the proxy headers Sluice sets, and the gateway's own keys.
  private static let notForwarded: Set<String> = [
    "content-type", "content-length", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
    "connection", "host", "upgrade", "transfer-encoding", "keep-alive", "proxy-connection", "proxy-authorization",
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "user-agent",
  ]

  /// The upstream request's headers: pseudo-headers, gRPC's, the call's metadata (less what is
  /// never forwarded), `x-forwarded-*`, and the deadline left.
  static func requestHeaders(for call: ServerCall, path: String, authority: String, secure: Bool) -> HPACKHeaders {
    var headers = Self.callHeaders(path: path, authority: authority, secure: secure)
    if let deadline = call.deadline {
      headers.add(name: "grpc-timeout", value: Self.timeout(until: deadline))
    }
    let agent = call.metadata.first(name: "user-agent")
    headers.add(name: "user-agent", value: agent.map { "\($0) sluice" } ?? "sluice")
    for (name, value, _) in call.metadata
    where !name.hasPrefix(":") && !Self.notForwarded.contains(name) && !name.hasPrefix(MetadataKeys.gatewayPrefix) {
      headers.add(name: name, value: value)
    }
    let origin = call.origin
    let chain = (origin.forwardedFor(call.metadata).map { [$0] } ?? []) + (origin.peer.map { [$0] } ?? [])
    if !chain.isEmpty { headers.add(name: "x-forwarded-for", value: chain.joined(separator: ", ")) }
    if let host = origin.host(call.metadata) { headers.add(name: "x-forwarded-host", value: host) }
    headers.add(name: "x-forwarded-proto", value: origin.scheme(call.metadata))
    call.trace?.inject(into: &headers)
    return headers
  }

  /// The headers every gRPC request to an upstream starts with: pseudo-headers first, then gRPC's
  /// content type and `te`. The gateway's own calls (health checks, reflection) add `user-agent`.
  static func callHeaders(path: String, authority: String, secure: Bool) -> HPACKHeaders {
    [
      ":method": "POST", ":scheme": secure ? "https" : "http", ":path": path, ":authority": authority,
      "content-type": "application/grpc", "te": "trailers",
    ]
  }

  /// `grpc-timeout` for what is left until `deadline` (at least 1 ms; gRPC allows 8 digits).
  static func timeout(until deadline: NIODeadline) -> String {
    let nanoseconds = max((deadline - .now()).nanoseconds, 1_000_000)
    let milliseconds = nanoseconds / 1_000_000
    if milliseconds < 100_000_000 { return "\(milliseconds)m" }
    return "\(min(milliseconds / 1000, 99_999_999))S"
  }

  /// The upstream's response headers as the call's response metadata: without HTTP/2's and
  /// gRPC's own fields (the gateway writes those for its client).
  static func responseMetadata(_ headers: HPACKHeaders) -> HPACKHeaders {
    var metadata = HPACKHeaders()
    for (name, value, _) in headers where !MetadataKeys.isFraming(name) && !Self.notForwarded.contains(name) {
      metadata.add(name: name, value: value)
    }
    return metadata
  }

  /// A response that is not gRPC (another HTTP status, another content type), as gRPC's HTTP to
  /// status mapping has it; nil for a gRPC response.
  static func refusal(_ headers: HPACKHeaders) -> RPCError? {
    let status = headers.first(name: ":status") ?? ""
    guard status == "200" else {
      let code: RPCError.Code =
        switch status {
        case "400": .internalError
        case "401": .unauthenticated
        case "403": .permissionDenied
        case "404": .unimplemented
        case "429", "502", "503", "504": .unavailable
        default: .unknown
        }
      return GRPCErrors.upstreamHTTPStatus(status, code: code)
    }
    guard let type = headers.first(name: "content-type"), type.hasPrefix("application/grpc") else {
      return GRPCErrors.upstreamNotGRPC(contentType: headers.first(name: "content-type"))
    }
    return nil
  }

  /// The status in the upstream's trailers: its code and message unchanged, its other metadata
  /// (`grpc-status-details-bin` included) as the call's trailers.
  static func status(_ trailers: HPACKHeaders) -> (RPCError?, HPACKHeaders) {
    var rest = HPACKHeaders()
    for (name, value, _) in trailers
    where name == "grpc-status-details-bin" || (!MetadataKeys.isFraming(name) && !Self.notForwarded.contains(name)) {
      rest.add(name: name, value: value)
    }
    guard let text = trailers.first(name: "grpc-status"), let raw = Int(text) else {
      return (GRPCErrors.upstreamMissingStatus, rest)
    }
    guard raw != 0 else { return (nil, rest) }
    let code = Status.Code(rawValue: raw).flatMap { RPCError.Code($0) } ?? .unknown
    let message = trailers.first(name: "grpc-message").map(Self.percentDecoded) ?? ""
    return (GRPCErrors.upstreamStatus(code, message), rest)
  }

  /// An upstream stream that closed without a status: gRPC's HTTP/2 error code mapping, or
  /// UNAVAILABLE for a lost connection.
  static func error(for reason: UpstreamConnection.CloseReason, service: String) -> RPCError {
    switch reason {
    case .connectionLost(let detail):
      return GRPCErrors.upstreamUnavailable(service, detail)
    case .headersTooLarge:
      return GRPCErrors.upstreamFailed(service, "\(reason)")
    case .reset(let code):
      let mapped: RPCError.Code =
        switch HTTP2ErrorCode(networkCode: Int(code)) {
        case .refusedStream: .unavailable
        case .cancel: .cancelled
        case .enhanceYourCalm: .resourceExhausted
        case .inadequateSecurity: .permissionDenied
        default: .internalError
        }
      return GRPCErrors.upstreamReset(service, http2Code: code, code: mapped)
    }
  }

  /// `grpc-message`'s percent-encoding undone (invalid escapes are kept as they are).
  static func percentDecoded(_ text: String) -> String {
    guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
    var bytes: [UInt8] = []
    var iterator = Array(text.utf8)[...]
    while let byte = iterator.popFirst() {
      if byte == UInt8(ascii: "%"), iterator.count >= 2,
        let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16)
      {
        bytes.append(value)
        iterator = iterator.dropFirst(2)
      } else {
        bytes.append(byte)
      }
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}

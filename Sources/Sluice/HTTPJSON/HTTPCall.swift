internal import Foundation
internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP1
internal import SluiceCodec

/// One RPC over plain HTTP (PROTOCOL.md, "HTTP JSON"), on its connection's event loop: the
/// request as one JSON document (unary and server-streaming methods; or a `request` query
/// parameter on a GET, for `EventSource`) or as NDJSON (client-streaming and bidi methods, the end
/// of the body being the half-close); the response as one JSON document, NDJSON or Server-Sent
/// Events, decided by `HTTPCallStateMachine`.
///
/// The call runs the method's `RPCHandler` through the `RPCEngine`, like a native call. A
/// single-message request starts it once its body is in; an NDJSON request at its head, each
/// line handed over as it completes (`HTTPCallRequestStateMachine` reads the body).
/// Backpressure: the handler is writable while the connection is; `HTTPConnectionHandler` stops
/// reading while it is not, so an NDJSON body is held back by TCP.
final class HTTPCall: CallResponder {
  /// Media types accepted as JSON request bodies: curl's `-d` default and `fetch`'s default for a
  /// string body (which needs no CORS preflight) are accepted too.
  static let acceptedContentTypes: Set<String> = [
    "application/json", "application/x-ndjson", "application/jsonl", "application/x-www-form-urlencoded",
    "text/plain",
  ]

  /// The HTTP methods an RPC answers: POST, or PUT (what `curl -T` sends); GET only for
  /// server-streaming methods (for `EventSource`).
  static func allowedMethods(for method: SluiceCodec.MethodDescriptor, allowGet: Bool) -> [HTTPMethod] {
    method.kind == .serverStreaming && allowGet ? [.GET, .POST, .PUT, .OPTIONS] : [.POST, .PUT, .OPTIONS]
  }

  let eventLoop: any EventLoop
  private let connection: HTTPConnectionHandler
  private let port: HTTPPort
  /// The descriptors the call started with (see `JSONBridgeSource`).
  /// Writing JSON as the request's `Sluice-JSON-Output` asks, once `begin` has read it.
  private var bridge: JSONBridge
  private let method: SluiceCodec.MethodDescriptor
  private let head: HTTPRequestHead
  private let path: String
  private let cors: HTTPHeaders
  private var machine: HTTPCallStateMachine
  /// The request body, read as its framing says; nil until the head has been checked.
  private var request: HTTPCallRequestStateMachine?

  private var metadata = Metadata()
  private var timeout: Duration?
  /// The RPC's admission, handler, deadline and counts, from its start to `ended`.
  private var lifecycle = CallLifecycle()
  private var initialMetadata: HPACKHeaders = [:]
  /// The handler holds its requests back (`holdRequests`), and so the connection its reading.
  private var requestsHeld = false
  /// Whether the request has been read to its end.
  private(set) var requestEnded = false
  /// Whether the response has been written to its end (or abandoned).
  private var done = false
  /// The request was refused for its `Content-Encoding`: its answer is 415.
  private var refusedEncoding = false
  /// `Content-Encoding: gzip`: the body (one message) is inflated once it has arrived.
  private var gzipBody = false
  /// `Accept-Encoding` lists gzip: a single JSON response worth it is compressed
  /// (`ResponseCompression`).
  private var acceptsGzip = false

  /// What the request holds of the request budget (`HTTPCallRequestStateMachine.heldBytes`).
  private var held = 0
  /// The `--body-timeout` of an unfinished NDJSON line.
  private var lineTimer: Scheduled<Void>?

  init(
    connection: HTTPConnectionHandler,
    eventLoop: any EventLoop,
    port: HTTPPort,
    bridge: JSONBridge,
    method: SluiceCodec.MethodDescriptor,
    head: HTTPRequestHead,
    cors: HTTPHeaders
  ) {
    self.connection = connection
    self.eventLoop = eventLoop
    self.port = port
    self.bridge = bridge
    self.method = method
    self.head = head
    self.path = head.path
    self.cors = cors
    let framing: HTTPCallStateMachine.Framing
    switch method.kind {
    case .unary, .clientStreaming:
      framing = .json
    case .serverStreaming, .bidirectionalStreaming:
      let accept = head.headers["Accept"].joined(separator: ",").lowercased()
      framing = accept.contains("text/event-stream") ? .eventStream : .ndjson
    }
    self.machine = HTTPCallStateMachine(framing: framing)
  }

  // MARK: - The request

  /// The request's head arrived: everything that can be refused before the RPC starts is
  /// checked; an NDJSON request's RPC starts now.
  func begin() {
    let allowed = Self.allowedMethods(for: self.method, allowGet: self.port.http.allowGetCalls)
    guard allowed.contains(self.head.method), self.head.method != .OPTIONS else {
      let list = allowed.map { "\($0)" }.joined(separator: ", ")
      var headers = self.cors
      headers.add(name: "Allow", value: list)
      self.answer(
        HTTPStatusResponse(
          .methodNotAllowed,
          code: .unimplemented,
          message: "\(self.path) answers \(list), not \(self.head.method)",
          headers: headers
        )
      )
      return
    }
    do throws(RPCError) {
      try self.checkContentType()
      try self.checkContentEncoding()
      (self.metadata, self.timeout) = try RequestMetadata.from(headers: self.head.headers)
      self.bridge = try self.bridge.forRequest(self.head.headers)
      let limit = self.port.calls.maxMessageBytes
      if self.head.method == .GET {
        let message = try self.bridge.encodeRequest(try self.queryRequest(), for: self.method)
        self.request = HTTPCallRequestStateMachine(body: .query(message), maxMessageBytes: limit)
        return  // the RPC starts once the (empty) body has ended
      }
      if self.method.takesOneRequest {
        self.request = .single(gzip: self.gzipBody, maxMessageBytes: limit)
        try self.request?.checkDeclaredLength(self.head.headers.first(name: "Content-Length").flatMap(Int.init))
        self.sendContinueIfExpected()
      } else {
        self.sendContinueIfExpected()
        self.request = .ndjson(maxMessageBytes: limit)
        self.start(message: nil, end: false)
      }
    } catch {
      self.failBeforeStart(error)
    }
  }

  func receivedBody(_ chunk: ByteBuffer) {
    self.port.metrics.bytes(.http, .in, count: chunk.readableBytes)
    guard !self.done else { return }
    do throws(RPCError) {
      guard let received = try self.request?.received(chunk) else { return }
      try self.hold(self.request?.heldBytes ?? 0)
      if received.cancelsLineTimer {
        self.lineTimer?.cancel()
        self.lineTimer = nil
      }
      for line in received.lines {
        guard !self.done else { return }
        try self.receivedLine(line)
      }
      if received.startsLineTimer, !self.done {
        let timeout = self.port.calls.bodyTimeout
        self.lineTimer = self.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
          self.lineTimer = nil
          self.connection.inCallback { self.bodyFailed(GRPCErrors.bodyTimedOut("an NDJSON line", after: timeout)) }
        }
      }
    } catch {
      self.bodyFailed(error)
    }
  }

  func receivedEnd() {
    self.requestEnded = true
    self.lineTimer?.cancel()
    self.lineTimer = nil
    guard !self.done else { return }
    do throws(RPCError) {
      guard let ended = try self.request?.ended() else { return }
      self.releaseBudget()
      switch ended {
      case .queryMessage(let message):
        self.start(message: message, end: true)
      case .message(let body):
        let message = try self.bridge.encodeRequest(
          try self.bridge.parse(body.readableBytesView),
          for: self.method
        )
        self.start(message: message, end: true)
      case .halfClose(let last):
        if let last { try self.receivedLine(last) }
        if let handler = self.lifecycle.handler, let call = self.lifecycle.call, !self.done {
          handler.receivedEnd(call)
        }
      case .none:
        break
      }
    } catch {
      self.bodyFailed(error)
    }
  }

  /// The connection went away: the RPC is cancelled and nothing more is written.
  func clientGone() {
    guard !self.done else { return }
    self.done = true
    self.ended(code: "\(RPCError.Code.cancelled)")?.stopped()
  }

  /// The request broke HTTP/1.1 framing after the response began.
  func requestFailed(_ error: RPCError) {
    self.bodyFailed(error)
  }

  func connectionBecameWritable() {
    guard !self.done, let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
    handler.becameWritable(call)
  }

  // MARK: - CallResponder

  var isWritable: Bool { self.connection.isWritable }

  var outputTurn: ConnectionTurn? { self.connection.turn }

  var messageCompressed: Bool { false }

  func send(serialized message: [UInt8], compressed: Bool) {
    guard !self.done, self.lifecycle.isRunning else { return }
    let json: [UInt8]
    do {
      json = try self.bridge.decodeResponse(message, for: self.method)
    } catch {
      self.stop(error)
      return
    }
    switch self.machine.message(json) {
    case .hold, .drop:
      break
    case .writeHeadAndLine:
      self.connection.write(.head(self.responseHead(metadata: self.initialMetadata, keepAlive: true)))
      self.writeLine(json)
    case .writeLine:
      self.writeLine(json)
    case .fail(let error):
      self.stop(error)
      return
    }
    self.lifecycle.sending()
    self.connection.flushSoon()
  }

  func sendHeaders(_ metadata: HPACKHeaders) {
    // The response head goes out with the first message or the end: until then it can take them.
    guard !self.done, self.lifecycle.messagesOut == 0, let call = self.lifecycle.call else { return }
    self.initialMetadata = self.port.engine.responseMetadata(metadata, for: call)
  }

  func holdRequests(_ hold: Bool) {
    guard !self.done, hold != self.requestsHeld else { return }
    self.requestsHeld = hold
    self.connection.holdRequests(hold)
  }

  func finish(_ error: RPCError?, trailers: HPACKHeaders) {
    guard !self.done, self.lifecycle.isRunning else { return }
    self.end(error, trailers: trailers, errorStatus: nil)
  }

  // MARK: - The RPC

  private func start(message: [UInt8]?, end: Bool) {
    let engine = self.port.engine
    let refusal = self.lifecycle.begin(
      engine,
      path: self.path,
      metadata: RequestMetadata.headers(self.metadata),
      timeout: self.timeout,
      origin: CallOrigin(
        peerAddress: self.connection.remoteAddress,
        source: .headers(self.head.headers, secure: self.port.secure)
      ),
      transport: .http,
      responder: self,
      expired: { self.connection.inCallback { self.stop(GRPCErrors.deadlineExceeded) } }
    )
    if let refusal {
      self.end(refusal, trailers: [:], errorStatus: nil)
      return
    }
    guard let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
    self.initialMetadata = CallLifecycle.start(handler, call, engine: engine) ?? [:]
    if let message, !self.done {
      self.lifecycle.receiving()
      handler.received(ByteBuffer(bytes: message), call)
    }
    if end, !self.done { handler.receivedEnd(call) }
  }

  /// Ends the RPC without its handler (a deadline, a response that does not translate, a body
  /// that broke the rules): `error` is its status.
  private func stop(_ error: RPCError, errorStatus: HTTPResponseStatus? = nil) {
    guard !self.done else { return }
    let handler = self.lifecycle.handler
    self.end(error, trailers: [:], errorStatus: errorStatus)
    handler?.stopped()
  }

  /// Writes the call's outcome and hands the connection back.
  private func end(_ error: RPCError?, trailers: HPACKHeaders, errorStatus: HTTPResponseStatus?) {
    guard !self.done else { return }
    self.done = true
    self.ended(code: error.map { "\($0.code)" } ?? "ok")
    let keepAlive = self.requestEnded && self.head.isKeepAlive
    switch self.machine.finished(error, errorStatus: errorStatus) {
    case .none:
      return
    case .writeEndLine:
      self.writeLine(StatusJSON.endFrame(error, trailers: trailers, bridge: self.bridge))
      self.connection.endResponse(keepAlive: keepAlive)
    case .writeHeadAndEndLine:
      self.connection.write(.head(self.responseHead(metadata: self.initialMetadata, keepAlive: keepAlive)))
      self.writeLine(StatusJSON.endFrame(error, trailers: trailers, bridge: self.bridge))
      self.connection.endResponse(keepAlive: keepAlive)
    case .writeSingle(let json):
      var metadata = self.initialMetadata
      metadata.add(contentsOf: trailers)
      var head = self.responseHead(metadata: metadata, keepAlive: keepAlive)
      var body = self.connection.allocator.buffer(bytes: json)
      if let gzipped = ResponseCompression.gzipped(
        json, accepts: self.acceptsGzip, allocator: self.connection.allocator)
      {
        head.headers.add(name: "Content-Encoding", value: "gzip")
        body = gzipped
      }
      head.headers.add(name: "Vary", value: "Accept-Encoding")
      head.headers.add(name: "Content-Length", value: "\(body.readableBytes)")
      self.connection.write(.head(head))
      self.connection.write(.body(.byteBuffer(body)))
      self.port.metrics.bytes(.http, .out, count: body.readableBytes)
      self.connection.endResponse(keepAlive: keepAlive)
    case .writeError(let error, let status):
      self.writeError(error, status: status, trailers: trailers)
    }
  }

  /// Bookkeeping once the RPC is over, whichever way it ended.
  @discardableResult
  private func ended(code: String) -> (any RPCHandler)? {
    let handler = self.lifecycle.end(self.port.engine, code: code)
    self.lineTimer?.cancel()
    self.lineTimer = nil
    if self.requestsHeld {
      self.requestsHeld = false
      self.connection.holdRequests(false)
    }
    self.request?.stop()
    self.releaseBudget()
    self.port.logger.debug(
      "HTTP RPC ended",
      metadata: [
        "sluice.rpc.method": "\(self.path)", "sluice.rpc.code": "\(code)",
        "sluice.http.framing": "\(self.machine.framing)",
      ]
    )
    return handler
  }

  /// A request that was refused before its RPC started.
  private func failBeforeStart(_ error: RPCError) {
    self.done = true
    self.request?.stop()
    self.releaseBudget()
    _ = self.machine.finished(error)
    self.writeError(error, status: self.status(for: error) ?? error.code.httpStatus)
  }

  /// The request body broke a rule (too large, too slow, a bad line): the RPC ends with it, and
  /// the connection closes after the answer.
  private func bodyFailed(_ error: RPCError) {
    guard !self.done else { return }
    if !self.lifecycle.isRunning {
      self.failBeforeStart(error)
    } else {
      self.stop(error, errorStatus: self.status(for: error))
    }
    self.connection.flushSoon()
  }

  // MARK: - Body

  /// Holds `bytes` of the request budget for the request's unfinished messages (more, or less,
  /// than before).
  private func hold(_ bytes: Int) throws(RPCError) {
    if bytes > self.held {
      guard self.port.budget.reserve(bytes - self.held) else {
        throw GRPCErrors.requestBufferFull(limit: self.port.budget.limit)
      }
    } else if bytes < self.held {
      self.port.budget.release(self.held - bytes)
    }
    self.held = bytes
  }

  private func receivedLine(_ line: HTTPCallRequestStateMachine.Line) throws(RPCError) {
    do throws(RPCError) {
      let value = try self.bridge.parse(line.bytes)
      if let control = JSONBridge.controlFrame(value), let key = control.members.first?.key {
        throw GRPCErrors.controlFrameOverHTTP(key)
      }
      let message = try self.bridge.encodeRequest(value, for: self.method)
      guard let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
      self.lifecycle.receiving()
      handler.received(ByteBuffer(bytes: message), call)
    } catch {
      throw GRPCErrors.ndjsonLine(line.number, error)
    }
  }

  private func releaseBudget() {
    if self.held > 0 {
      self.port.budget.release(self.held)
      self.held = 0
    }
  }

  // MARK: - Writing

  private func writeLine(_ json: [UInt8]) {
    let framing = self.machine.framing
    var buffer = self.connection.allocator.buffer(capacity: json.count + 8)
    if framing == .eventStream { buffer.writeString("data: ") }
    buffer.writeBytes(json)
    buffer.writeString(framing == .eventStream ? "\n\n" : "\n")
    self.port.metrics.bytes(.http, .out, count: buffer.readableBytes)
    self.connection.write(.body(.byteBuffer(buffer)))
  }

  /// An error answer before anything was sent; the connection closes after it.
  /// The error answer: a `google.rpc.Status` object with the error's metadata and the handler's
  /// `trailers` (a proxied call's, `grpc-status-details-bin` among them).
  private func writeError(_ error: RPCError, status: HTTPResponseStatus, trailers: HPACKHeaders = [:]) {
    var headers = self.cors
    if error.code == .unauthenticated { headers.add(name: "WWW-Authenticate", value: "Bearer") }
    if self.refusedEncoding {
      // RFC 7694: a 415 for an encoding names the ones that are accepted.
      headers.add(name: "Accept-Encoding", value: self.method.takesOneRequest ? "gzip, identity" : "identity")
    }
    var all = error.metadata
    for (name, value, _) in trailers { all.addString(value, forKey: name) }
    self.answer(
      HTTPStatusResponse(
        status, code: error.code, message: error.message, trailers: all, headers: headers, bridge: self.bridge)
    )
  }

  private func answer(_ response: HTTPStatusResponse) {
    self.done = true
    self.connection.answer(response, includingBody: true)
  }

  private func responseHead(metadata: HPACKHeaders, keepAlive: Bool) -> HTTPResponseHead {
    var headers = self.cors
    headers.add(name: "Content-Type", value: self.machine.framing.contentType)
    headers.add(name: CORS.noSniff.name, value: CORS.noSniff.value)
    if self.machine.framing != .json {
      headers.add(name: "Cache-Control", value: "no-cache")
    }
    Self.addMetadataHeaders(metadata, to: &headers)
    if !keepAlive { headers.add(name: "Connection", value: "close") }
    return HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)
  }

  /// Response metadata as `grpc-metadata-<key>` headers (binary values base64), exposed to a
  /// page's script: HTTP JSON's and REST's.
  static func addMetadataHeaders(_ metadata: HPACKHeaders, to headers: inout HTTPHeaders) {
    var exposed: [String] = []
    for (key, values) in StatusJSON.json(metadata).members {
      guard case .array(let values) = values else { continue }
      let name = "grpc-metadata-\(key)"
      exposed.append(name)
      for case .string(let value) in values { headers.add(name: name, value: value) }
    }
    CORS.exposing(exposed, in: &headers)
  }

  // MARK: - Checks

  /// 413 for a request that is too large, 408 for one that did not arrive in time
  /// (the only deadline before the RPC runs is `--body-timeout`); the standard mapping otherwise.
  private func status(for error: RPCError) -> HTTPResponseStatus? {
    if error.code == .deadlineExceeded { return .requestTimeout }
    if self.refusedEncoding { return .unsupportedMediaType }
    return self.request?.refusedTooLarge == true ? .payloadTooLarge : nil
  }

  /// `Content-Encoding`: identity, or gzip for a body that is one message (an NDJSON stream would need
  /// its lines inflated as they arrive, which is not done); anything else is 415 naming what is
  /// accepted. `Accept-Encoding: gzip` is noted for the response.
  private func checkContentEncoding() throws(RPCError) {
    self.acceptsGzip = ResponseCompression.acceptsGzip(self.head.headers["Accept-Encoding"])
    for value in self.head.headers["Content-Encoding"] {
      for encoding in value.split(separator: ",") {
        switch encoding.trimmingCharacters(in: .whitespaces).lowercased() {
        case "identity": continue
        case "gzip" where self.method.takesOneRequest && self.head.method != .GET:
          self.gzipBody = true
        default:
          self.refusedEncoding = true
          throw GRPCErrors.unsupportedBodyEncoding(
            String(encoding), accepted: self.method.takesOneRequest ? "gzip, identity" : "identity")
        }
      }
    }
  }

  private func checkContentType() throws(RPCError) {
    guard self.head.method != .GET, let contentType = self.head.headers.first(name: "Content-Type") else { return }
    guard Self.acceptedContentTypes.contains(Self.mediaType(of: contentType)) else {
      throw GRPCErrors.notJSONContentType(contentType)
    }
  }

  /// The media type of a `Content-Type` value, lowercased, without parameters or spaces (by
  /// hand: Foundation's trimming was a tenth of a unary call's CPU).
  static func mediaType(of value: String) -> String {
    let isSpace = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
    let end = value.utf8.firstIndex(of: UInt8(ascii: ";")) ?? value.utf8.endIndex
    var part = value.utf8[..<end].drop(while: isSpace)
    while let last = part.last, isSpace(last) { part = part.dropLast() }
    return String(decoding: part, as: UTF8.self).lowercased()
  }

  /// The request of a GET: `?request=<JSON>` (URL-encoded); `{}` when absent.
  private func queryRequest() throws(RPCError) -> JSONValue {
    // Form encoding writes spaces as `+`; JSON's own `+` arrives as `%2B`.
    let uri = self.head.uri.replacingOccurrences(of: "+", with: "%20")
    let items = URLComponents(string: uri)?.queryItems ?? []
    guard let text = items.first(where: { $0.name == "request" })?.value else { return .object([:]) }
    return try self.bridge.parse(Array(text.utf8))
  }

  private func sendContinueIfExpected() {
    if self.head.headers["Expect"].contains(where: { $0.lowercased() == "100-continue" }) {
      self.connection.write(.head(HTTPResponseHead(version: self.head.version, status: .continue)))
      self.connection.flushSoon()
    }
  }
}

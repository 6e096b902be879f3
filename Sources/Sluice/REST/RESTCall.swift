internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP1
internal import SluiceCodec

/// One call on a REST route (a method's `google.api.http` rule), on an HTTP exchange of either
/// port: the request message is assembled from the body, the path's variables and the query
/// (`RESTRequest`), the method is called with it, and the answer is 200 with the response message
/// (or its `response_body` field) as JSON, the response metadata as `grpc-metadata-<key>` headers;
/// an error is the HTTP JSON error (a `google.rpc.Status` object) with the status gRPC's code maps
/// to. `Content-Encoding: gzip` bodies are read and `Accept-Encoding: gzip` answers compressed, as
/// for HTTP JSON.
///
/// A server-streaming method answers each message as it comes (no envelope around it), framed by
/// `Accept`: NDJSON (the default), Server-Sent Events (`text/event-stream`) or one JSON array
/// (`application/json`). The head waits for the first message, so a failure before it gets its
/// HTTP status; a failure after it ends the stream with the `google.rpc.Status` object as the last
/// line, an `event: error`, or the array's last element. Flow control as for every exchange: the
/// method produces only while the client reads.
///
/// A client-streaming or bidi method reads its requests from an NDJSON body, a message a line as
/// each line completes (blank lines skipped); the path's variables and the query are set on every
/// message, and `body` applies to each line as to a unary body. Its call starts with the request's
/// head, so a bidi method's answers stream while the body is still coming; a client-streaming one
/// answers its one message as a unary method does.
///
/// A route whose body is a `google.api.HttpBody` (the request, or its `body` field) takes the raw
/// body as that message's `data`, with `Content-Type` as its `content_type`; a streaming one makes
/// each chunk of the body a message as it arrives. A route whose answer is an HttpBody (the
/// response, or its `response_body` field) answers its `data` as it is, with its `content_type`;
/// a server stream of them is their data one after the other, with the first one's type. Such a
/// stream that fails after its first message just ends (as Envoy's transcoder does): raw bytes
/// have no place for a status.
///
/// The framing only: the call's lifecycle, limits and end are `ExchangeCall`'s.
final class RESTCall: ExchangeCall {
  private let route: RESTRoutes.Route
  private let bindings: [PathTemplate.Binding]
  /// The body so far (a method that takes one request).
  private var body: ByteBuffer?
  /// A streaming request's lines (a client-streaming or bidi method).
  private var lines: NDJSONLines?
  /// The number of the last line read, for errors naming it.
  private var lineNumber = 0
  private var gzipRequest = false
  private var gzipResponse = false
  /// The body is a `google.api.HttpBody`'s data (`RESTRequest.rawRequestBody`).
  private let rawRequest: Bool
  /// The answer is a `google.api.HttpBody`'s data (`RESTRequest.rawResponseBody`).
  private let rawResponse: Bool
  /// The one response message (JSON), held until the end so that an error after it still gets
  /// its status.
  private var heldResponse: [UInt8]?
  /// How a server stream's messages are written; nil for a unary method.
  private let streamFraming: StreamFraming?
  private var headSent = false

  /// A server stream's framing, from `Accept`.
  enum StreamFraming {
    case ndjson, eventStream, array

    init(accept: String) {
      let accept = accept.lowercased()
      if accept.contains("text/event-stream") {
        self = .eventStream
      } else if accept.contains("application/json"), !accept.contains("ndjson") {
        self = .array
      } else {
        self = .ndjson
      }
    }

    var contentType: String {
      switch self {
      case .ndjson: "application/x-ndjson"
      case .eventStream: "text/event-stream"
      case .array: "application/json"
      }
    }
  }

  init(
    exchange: any HTTPExchange,
    request: HTTPExchangeRequest,
    route: RESTRoutes.Route,
    bindings: [PathTemplate.Binding],
    engine: RPCEngine,
    bridge: JSONBridge,
    metrics: GatewayMetrics,
    cors: HTTPHeaders
  ) {
    self.route = route
    self.bindings = bindings
    self.rawRequest = RESTRequest.rawRequestBody(route.rule, input: route.method.input)
    self.rawResponse = RESTRequest.rawResponseBody(route.rule, output: route.method.output)
    self.streamFraming =
      route.method.kind.serverStreams
      ? StreamFraming(accept: request.headers["Accept"].joined(separator: ",")) : nil
    super.init(
      exchange: exchange, request: request, transport: .rest, engine: engine, bridge: bridge, metrics: metrics,
      cors: cors, path: route.method.path)
  }

  // MARK: - The request

  override func begin() {
    let streams = self.route.method.kind.clientStreams
    for encoding in self.request.headers["Content-Encoding"] {
      switch encoding.lowercased() {
      case "identity": break
      case "gzip" where !streams: self.gzipRequest = true
      case _ where streams:
        // Lines are read as they come: a stream of requests is not inflated.
        return self.refuse(
          GRPCErrors.unsupportedBodyEncoding(encoding, accepted: "identity"), status: .unsupportedMediaType)
      default: return self.refuse(GRPCErrors.unsupportedContentEncoding(encoding, header: "Content-Encoding"))
      }
    }
    self.gzipResponse = ResponseCompression.acceptsGzip(self.request.headers["Accept-Encoding"])
    if streams {
      if !self.rawRequest { self.lines = NDJSONLines(maxLineBytes: self.engine.maximumMessageBytes) }
    } else {
      self.body = self.exchange.allocator.buffer(capacity: 0)
    }
    self.start(timeout: nil, json: true) { key in
      key == "content-type" || key == "content-encoding" || key == "accept-encoding" || key == "accept"
    }
  }

  override var heldRequestBytes: Int { self.body?.readableBytes ?? self.lines?.pendingBytes ?? 0 }

  override var waitsForOneMessage: Bool { !self.route.method.kind.clientStreams }

  override func receivedBody(_ chunk: ByteBuffer) {
    self.metrics.bytes(.rest, .in, count: chunk.readableBytes)
    guard self.isReceiving else { return }
    if var lines = self.lines {
      let completed: [[UInt8]]
      do {
        completed = try lines.append(chunk)
      } catch {
        return self.stop(GRPCErrors.requestTooLarge("an NDJSON line", limit: self.engine.maximumMessageBytes))
      }
      self.lines = lines
      for line in completed {
        guard self.isReceiving else { return }
        self.receivedLine(line)
      }
      return self.account()
    }
    guard var body = self.body else {
      guard self.rawRequest, self.route.method.kind.clientStreams else { return }
      // A stream of raw chunks: each is a message.
      do {
        try self.deliverMessage(RESTRequest.httpBodyJSON(contentType: self.contentType, chunk.readableBytesView))
      } catch {
        self.stop(error)
      }
      return
    }
    self.body = nil  // unique while written to: no copy
    guard self.append(chunk, to: &body) else { return }
    self.body = body
    self.account()
  }

  override func receivedEnd() {
    super.receivedEnd()
    guard self.isReceiving else { return }
    if var lines = self.lines {
      self.lines = nil
      if let last = lines.finish() { self.receivedLine(last) }
      if self.isReceiving { self.deliverEnd() }
      return
    }
    guard var body = self.body else {
      if self.rawRequest { self.deliverEnd() }
      return
    }
    self.body = nil
    do throws(RPCError) {
      if self.gzipRequest, body.readableBytes > 0 {
        do {
          body = try GzipMessage.inflate(body, limit: self.engine.maximumMessageBytes)
        } catch  where error.code == .internalError {
          // A client's body, not a message of gRPC's: its own mistake, told as one.
          throw GRPCErrors.restBody("the body is marked Content-Encoding: gzip but does not inflate: \(error.message)")
        }
      }
      if self.rawRequest {
        try self.deliverMessage(RESTRequest.httpBodyJSON(contentType: self.contentType, body.readableBytesView))
      } else {
        try self.deliverMessage(body.readableBytes == 0 ? nil : try self.bridge.parse(body.readableBytesView))
      }
    } catch {
      return self.stop(error)
    }
    self.deliverEnd()
  }

  /// The request's `Content-Type`, for an HttpBody.
  private var contentType: String? { self.request.headers.first(name: "Content-Type") }

  /// One line of a streaming request: a message unless blank; an error names the line.
  private func receivedLine(_ line: [UInt8]) {
    self.lineNumber += 1
    guard !NDJSONLines.isBlank(line) else { return }
    do throws(RPCError) {
      do throws(RPCError) {
        try self.deliverMessage(try self.bridge.parse(line))
      } catch {
        throw GRPCErrors.ndjsonLine(self.lineNumber, error)
      }
    } catch {
      self.stop(error)
    }
  }

  /// The request message from `body` (a JSON value, nil for none), the path and the query.
  private func deliverMessage(_ body: JSONValue?) throws(RPCError) {
    let uri = self.request.uri
    let query = uri.firstIndex(of: "?").map { uri[uri.index(after: $0)...] }
    let message = try RESTRequest.message(
      rule: self.route.rule, input: self.route.method.input, bindings: self.bindings, query: query, body: body,
      ignoringUnknownQuery: self.bridge.restIgnoresUnknownQuery)
    try self.deliver(self.exchange.allocator.buffer(bytes: message.serializedBytes), compressed: false, gzip: false)
  }

  // MARK: - The response

  override func send(serialized message: [UInt8], compressed: Bool) {
    guard let payload = self.responsePayload(message) else { return }
    guard let framing = self.streamFraming else {
      guard self.heldResponse == nil else { return self.stop(GRPCErrors.extraResponse) }
      self.heldResponse = payload
      return
    }
    if self.rawResponse { return self.sendRaw(payload) }
    let body: [UInt8]
    do {
      body = try RESTRequest.responseBody(
        payload, rule: self.route.rule, output: self.route.method.output, bridge: self.bridge)
    } catch {
      return self.stop(error)
    }
    var buffer = self.exchange.allocator.buffer(capacity: body.count + 8)
    if !self.headSent {
      self.writeStreamHead(framing)
      if framing == .array { buffer.writeString("[") }
    } else if framing == .array {
      buffer.writeString(",")
    }
    Self.frame(body, framing, into: &buffer)
    self.write(buffer)
    self.exchange.flushSoon()
  }

  /// One HttpBody of a server stream: its data as it is, the head with the first one's type.
  private func sendRaw(_ payload: [UInt8]) {
    let body: (contentType: String, data: [UInt8])
    do {
      body = try RESTRequest.httpBody(
        payload, rule: self.route.rule, output: self.route.method.output, bridge: self.bridge)
    } catch {
      return self.stop(error)
    }
    if !self.headSent { self.writeRawHead(body.contentType) }
    guard !body.data.isEmpty else { return }
    self.write(self.exchange.allocator.buffer(bytes: body.data))
    self.exchange.flushSoon()
  }

  private func writeRawHead(_ contentType: String) {
    self.headSent = true
    var headers = self.headers(self.initialMetadata)
    headers.add(name: "Content-Type", value: contentType)
    headers.add(name: "Cache-Control", value: "no-cache")
    self.exchange.writeHead(.ok, headers: headers)
  }

  /// One message (or the closing status) of a server stream.
  private static func frame(
    _ json: [UInt8], _ framing: StreamFraming, event: String? = nil, into buffer: inout ByteBuffer
  ) {
    switch framing {
    case .ndjson:
      buffer.writeBytes(json)
      buffer.writeString("\n")
    case .eventStream:
      if let event { buffer.writeString("event: \(event)\n") }
      buffer.writeString("data: ")
      buffer.writeBytes(json)
      buffer.writeString("\n\n")
    case .array:
      buffer.writeBytes(json)
    }
  }

  private func writeStreamHead(_ framing: StreamFraming) {
    self.headSent = true
    var headers = self.headers(self.initialMetadata)
    headers.add(name: "Content-Type", value: framing.contentType)
    headers.add(name: "Cache-Control", value: "no-cache")
    self.exchange.writeHead(.ok, headers: headers)
  }

  override func finalStatus(_ error: RPCError?) -> RPCError? {
    if error == nil, self.streamFraming == nil, self.heldResponse == nil { return GRPCErrors.missingResponse }
    return error
  }

  override func writeEnd(_ error: RPCError?, trailers: HPACKHeaders) {
    if let framing = self.streamFraming {
      guard self.rawResponse, self.headSent || error == nil else {
        return self.writeStreamEnd(framing, error, trailers: trailers)
      }
      // Raw bytes: nothing to close them with (an empty stream is an empty body).
      if !self.headSent { self.writeRawHead("application/octet-stream") }
      return
    }
    guard error == nil, let response = self.heldResponse else {
      return self.writeError(error ?? GRPCErrors.missingResponse, trailers: trailers, status: nil)
    }
    let body: [UInt8]
    let contentType: String
    do {
      if self.rawResponse {
        (contentType, body) = try RESTRequest.httpBody(
          response, rule: self.route.rule, output: self.route.method.output, bridge: self.bridge)
      } else {
        contentType = "application/json"
        body = try RESTRequest.responseBody(
          response, rule: self.route.rule, output: self.route.method.output, bridge: self.bridge)
      }
    } catch {
      return self.writeError(error, trailers: trailers, status: nil)
    }
    var headers = self.headers(self.initialMetadata)
    headers.add(name: "Content-Type", value: contentType)
    var bytes = self.exchange.allocator.buffer(bytes: body)
    if let gzipped = ResponseCompression.gzipped(body, accepts: self.gzipResponse, allocator: self.exchange.allocator) {
      headers.add(name: "Content-Encoding", value: "gzip")
      bytes = gzipped
    }
    headers.add(name: "Content-Length", value: "\(bytes.readableBytes)")
    self.exchange.writeHead(.ok, headers: headers)
    self.write(bytes)
  }

  /// A server stream's end: nothing more after its messages when it succeeded (`]` for an array,
  /// `[]` when there were none); after a failure, the status object (before any message, the HTTP
  /// error answer instead).
  private func writeStreamEnd(_ framing: StreamFraming, _ error: RPCError?, trailers: HPACKHeaders) {
    var buffer = self.exchange.allocator.buffer(capacity: 64)
    if let error {
      guard self.headSent else { return self.writeError(error, trailers: trailers, status: nil) }
      var all = error.metadata
      for (name, value, _) in trailers { all.addString(value, forKey: name) }
      let status = JSONValue.object(
        StatusJSON.status(code: error.code, message: error.message, trailers: all, bridge: self.bridge))
      if framing == .array { buffer.writeString(",") }
      Self.frame(status.serializedBytes, framing, event: "error", into: &buffer)
    } else if !self.headSent {
      self.writeStreamHead(framing)
      if framing == .array { buffer.writeString("[") }
    }
    if framing == .array { buffer.writeString("]") }
    if buffer.readableBytes > 0 { self.write(buffer) }
  }

  override func writeRefusal(_ error: RPCError, status: HTTPResponseStatus?) {
    self.writeError(error, trailers: [:], status: status)
  }

  /// The HTTP JSON error: `{"code":N,"message":"…","trailers":{…}}` with the status the code maps
  /// to.
  private func writeError(_ error: RPCError, trailers: HPACKHeaders, status: HTTPResponseStatus?) {
    var headers = self.headers(self.initialMetadata)
    var all = error.metadata
    for (name, value, _) in trailers { all.addString(value, forKey: name) }
    let body = JSONValue.object(
      StatusJSON.status(code: error.code, message: error.message, trailers: all, bridge: self.bridge)
    )
    .serializedBytes
    headers.add(name: "Content-Type", value: "application/json")
    headers.add(name: "Content-Length", value: "\(body.count)")
    if error.code == .unauthenticated { headers.add(name: "WWW-Authenticate", value: "Bearer") }
    self.exchange.writeHead(status ?? error.code.httpStatus, headers: headers)
    self.write(self.exchange.allocator.buffer(bytes: body))
  }

  /// CORS and the response metadata as `grpc-metadata-<key>`, readable by a page's script.
  private func headers(_ metadata: HPACKHeaders) -> HTTPHeaders {
    var headers = self.cors
    headers.add(name: CORS.noSniff.name, value: CORS.noSniff.value)
    HTTPCall.addMetadataHeaders(metadata, to: &headers)
    return headers
  }
}

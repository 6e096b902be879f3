internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP1
internal import SluiceCodec

/// One gRPC-Web call (gRPC's PROTOCOL-WEB) on an HTTP exchange of either port: the request body
/// is gRPC's length-prefixed messages (base64 for `application/grpc-web-text`, JSON messages for
/// `+json`), the response is 200 with the metadata as headers, the messages, and the status as a
/// last frame flagged 0x80; an error before any message is a trailers-only answer (the status in
/// the headers, no body), as Envoy's `grpc_web` filter gives it.
///
/// The call runs the method's `RPCHandler` through the engine's `CallLifecycle`, like every other
/// front end. Limits as on the native port: a request message must arrive within `--body-timeout`
/// once begun (a unary or server-streaming call's one message from the start), and the bytes of a
/// message begun are held in `--max-buffered-request-bytes`.
final class GRPCWebCall: HTTPExchangeHandler, CallResponder {
  private let exchange: any HTTPExchange
  private let engine: RPCEngine
  private let metrics: GatewayMetrics
  private let request: HTTPExchangeRequest
  private let path: String
  private let contentType: GRPCWebFraming.ContentType
  /// The content type of a request whose codec is not supported (refused at `begin`).
  private let unsupportedContentType: String?
  /// Whether the response body is base64 (a text request, or `Accept: application/grpc-web-text`).
  private let textResponse: Bool
  /// Headers every answer carries (CORS).
  private let cors: HTTPHeaders
  /// `+json`: the descriptors that translate the messages, and the method's.
  private let bridge: JSONBridge
  private var jsonMethod: SluiceCodec.MethodDescriptor?

  private var lifecycle = CallLifecycle()
  private var deframer: GRPCMessageDeframer
  private var textDecoder = GRPCWebTextDecoder()
  /// `grpc-encoding: gzip`: messages flagged compressed are gzip.
  private var gzip = false
  private var compressesResponses = false
  /// The handler's response metadata, sent with the response head.
  private var initialMetadata: HPACKHeaders = [:]
  private var headSent = false
  /// The response has ended (or the client is gone): nothing more is written.
  private var done = false
  private var requestEnded = false
  private var requestsHeld = false
  /// Bytes of a message begun, reserved in the engine's budget.
  private var heldBytes = 0
  /// `--body-timeout` for the request message the call waits for.
  private var bodyTimer: Scheduled<Void>?
  private(set) var messageCompressed = false

  init(
    exchange: any HTTPExchange,
    request: HTTPExchangeRequest,
    contentType: GRPCWebFraming.ContentType?,
    engine: RPCEngine,
    bridge: JSONBridge,
    metrics: GatewayMetrics,
    cors: HTTPHeaders
  ) {
    self.exchange = exchange
    self.request = request
    self.path = request.path
    self.contentType = contentType ?? GRPCWebFraming.ContentType(text: false, json: false)
    self.unsupportedContentType = contentType == nil ? request.headers.first(name: "Content-Type") ?? "" : nil
    self.textResponse =
      self.contentType.text
      || request.headers["Accept"].contains { $0.lowercased().contains("application/grpc-web-text") }
    self.engine = engine
    self.bridge = bridge
    self.metrics = metrics
    self.cors = cors
    self.deframer = GRPCMessageDeframer(maximumMessageBytes: engine.maximumMessageBytes)
  }

  // MARK: - The request

  /// The request's head arrived: checks it, then routes, admits and starts the call.
  func begin() {
    guard self.request.method == .POST else {
      self.refuse(GRPCErrors.gRPCWebNotPOST(self.request.method.rawValue), status: .methodNotAllowed)
      return
    }
    if let unsupported = self.unsupportedContentType {
      return self.refuse(GRPCErrors.gRPCWebCodec(unsupported), status: .unsupportedMediaType)
    }
    var timeout: Duration?
    for value in self.request.headers["grpc-timeout"] {
      guard let parsed = GRPCTimeout.parse(value) else { return self.refuse(GRPCErrors.invalidTimeout(value)) }
      timeout = parsed
    }
    for encoding in self.request.headers["grpc-encoding"] {
      switch encoding {
      case "identity": break
      case "gzip": self.gzip = true
      default: return self.refuse(GRPCErrors.unsupportedEncoding(encoding))
      }
    }
    if self.contentType.json {
      guard let method = self.bridge.registry.method(path: self.path) else {
        // Credentials first, as for every other refusal: without them, nothing is told.
        let refusal =
          self.engine.credentialRefusal(self.request.headers["Authorization"])
          ?? (self.engine.router.method(path: self.path) == nil
            ? GRPCErrors.unknownMethod(self.path) : GRPCErrors.jsonNeedsDescriptors(self.path))
        return self.refuse(refusal)
      }
      self.jsonMethod = method
    }
    let metadata = Self.metadata(of: self.request, path: self.path, secure: self.exchange.isSecure)
    let refusal = self.lifecycle.begin(
      self.engine,
      path: self.path,
      metadata: metadata,
      timeout: timeout,
      origin: CallOrigin(peerAddress: self.exchange.remoteAddress, source: .metadata),
      transport: .grpcWeb,
      responder: self,
      expired: { self.exchange.inCallback { self.stop(GRPCErrors.deadlineExceeded) } }
    )
    if let refusal { return self.refuse(refusal, metadata: metadata) }
    guard let method = self.lifecycle.method, let handler = self.lifecycle.handler, let call = self.lifecycle.call
    else { return }
    self.compressesResponses = method.compressesResponses && GRPCServerStreamState.acceptsGzip(metadata)
    if let initial = CallLifecycle.start(handler, call, engine: self.engine) {
      self.initialMetadata = initial
      // Over HTTP/2 a bidi client may wait for the headers before it sends; otherwise they wait
      // for the first message, so that an error before it is a trailers-only answer.
      if method.kind == .bidirectionalStreaming, self.exchange.isHTTP2 { self.writeHead() }
    }
    self.account()
  }

  func receivedBody(_ chunk: ByteBuffer) {
    self.metrics.bytes(.grpcWeb, .in, count: chunk.readableBytes)
    guard !self.done, self.lifecycle.isRunning else { return }
    if self.contentType.text {
      guard let decoded = self.textDecoder.decode(chunk) else { return self.stop(GRPCErrors.notBase64Body) }
      self.deframer.append(self.exchange.allocator.buffer(bytes: decoded))
    } else {
      self.deframer.append(chunk)
    }
    self.deliver()
  }

  func receivedEnd() {
    self.requestEnded = true
    guard !self.done, self.lifecycle.isRunning else { return }
    if self.textDecoder.hasPartialGroup { return self.stop(GRPCErrors.notBase64Body) }
    if self.deframer.hasPartialMessage { return self.stop(GRPCErrors.truncatedMessage) }
    self.account()
    guard let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
    handler.receivedEnd(call)
  }

  func becameWritable() {
    guard !self.done, let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
    handler.becameWritable(call)
  }

  func exchangeGone() {
    guard !self.done else { return }
    self.done = true
    self.ended(code: "\(RPCError.Code.cancelled)")?.stopped()
  }

  func quiesce() {
    guard !self.done, let method = self.lifecycle.method, method.kind != .unary else { return }
    self.stop(GRPCErrors.shuttingDown)
  }

  /// Hands every complete message to the handler.
  private func deliver() {
    var delivered = false
    do throws(RPCError) {
      while let message = try self.deframer.next() {
        guard !self.done, let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
        guard message.flags & GRPCWebFraming.trailerFlag == 0 else { throw GRPCErrors.trailerFrameInRequest }
        var bytes = message.bytes
        if message.flags & 1 != 0 {
          guard self.gzip else { throw GRPCErrors.compressedWithoutEncoding }
          bytes = try GzipMessage.inflate(bytes, limit: self.engine.maximumMessageBytes)
        }
        if let method = self.jsonMethod {
          let binary = try self.bridge.encodeRequest(try self.bridge.parse(bytes.readableBytesView), for: method)
          bytes = self.exchange.allocator.buffer(bytes: binary)
        }
        delivered = true
        self.cancelBodyTimer()
        self.lifecycle.receiving()
        self.messageCompressed = message.flags & 1 != 0
        handler.received(bytes, call)
      }
    } catch {
      return self.stop(error)
    }
    if delivered || self.deframer.bufferedBytes != self.heldBytes { self.account() }
  }

  /// Brings the call's hold on the budget and its body timer up to date.
  private func account() {
    guard !self.done, let method = self.lifecycle.method else { return }
    let held = self.deframer.bufferedBytes
    if held > self.heldBytes {
      guard self.engine.budget.reserve(held - self.heldBytes) else {
        return self.stop(GRPCErrors.requestBufferFull(limit: self.engine.budget.limit))
      }
    } else if held < self.heldBytes {
      self.engine.budget.release(self.heldBytes - held)
    }
    self.heldBytes = held
    let oneMessage = method.kind == .unary || method.kind == .serverStreaming
    let waiting =
      !self.requestEnded && !self.requestsHeld && (held > 0 || (oneMessage && self.lifecycle.messagesIn == 0))
    if !waiting {
      self.cancelBodyTimer()
    } else if self.bodyTimer == nil {
      let timeout = self.engine.bodyTimeout
      self.bodyTimer = self.exchange.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
        self.bodyTimer = nil
        self.exchange.inCallback { self.stop(GRPCErrors.bodyTimedOut("the request message", after: timeout)) }
      }
    }
  }

  private func cancelBodyTimer() {
    self.bodyTimer?.cancel()
    self.bodyTimer = nil
  }

  // MARK: - CallResponder

  var eventLoop: any EventLoop { self.exchange.eventLoop }

  var isWritable: Bool { self.exchange.isWritable }

  var outputTurn: ConnectionTurn? { self.exchange.outputTurn }

  func send(serialized message: [UInt8], compressed: Bool) {
    guard !self.done, self.lifecycle.isRunning else { return }
    var payload = message
    if let method = self.jsonMethod {
      do {
        payload = try self.bridge.decodeResponse(message, for: method)
      } catch {
        return self.stop(error)
      }
    }
    guard payload.count <= self.engine.maximumMessageBytes else {
      return self.stop(
        GRPCErrors.messageTooLarge(payload.count, limit: self.engine.maximumMessageBytes, received: false))
    }
    if !self.headSent { self.writeHead() }
    var frame = self.exchange.allocator.buffer(capacity: payload.count + 5)
    if compressed, self.compressesResponses,
      let gzipped = GzipMessage.deflate(payload, allocator: self.exchange.allocator)
    {
      frame.writeGRPCMessage(gzipped, compressed: true)
    } else {
      frame.writeGRPCMessage(bytes: payload)
    }
    self.write(frame)
    self.lifecycle.sending()
    self.exchange.flushSoon()
  }

  func sendHeaders(_ metadata: HPACKHeaders) {
    guard !self.done, !self.headSent, let call = self.lifecycle.call else { return }
    self.initialMetadata = self.engine.responseMetadata(metadata, for: call)
    self.writeHead()
    self.exchange.flushSoon()
  }

  func holdRequests(_ hold: Bool) {
    guard !self.done, hold != self.requestsHeld else { return }
    self.requestsHeld = hold
    self.exchange.holdRequests(hold)
    self.account()
  }

  func finish(_ error: RPCError?, trailers: HPACKHeaders) {
    guard !self.done, self.lifecycle.isRunning else { return }
    self.end(error, trailers: trailers)
  }

  // MARK: - The end

  /// Ends the call without its handler (a deadline, a bad request frame, a shutdown).
  private func stop(_ error: RPCError) {
    guard !self.done else { return }
    let handler = self.lifecycle.handler
    self.end(error, trailers: [:])
    handler?.stopped()
  }

  /// Writes the status (a trailer frame, or a trailers-only answer) and ends the response.
  private func end(_ error: RPCError?, trailers: HPACKHeaders) {
    guard !self.done else { return }
    self.done = true
    self.ended(code: error.map { "\($0.code)" } ?? "ok")
    if self.headSent {
      self.write(GRPCWebFraming.trailerFrame(error, trailers: trailers, allocator: self.exchange.allocator))
      self.exchange.endResponse(reusable: true)
    } else {
      var fields = self.initialMetadata
      GRPCServerStreamState.addStatus(error, to: &fields)
      fields.add(contentsOf: trailers)
      self.exchange.writeHead(.ok, headers: self.responseHeaders(fields, trailersOnly: true))
      self.exchange.endResponse(reusable: true)
    }
    self.exchange.flushSoon()
  }

  /// Bookkeeping once the call is over, whichever way it ended.
  @discardableResult
  private func ended(code: String) -> (any RPCHandler)? {
    let handler = self.lifecycle.end(self.engine, code: code)
    self.cancelBodyTimer()
    if self.heldBytes > 0 {
      self.engine.budget.release(self.heldBytes)
      self.heldBytes = 0
    }
    if self.requestsHeld {
      self.requestsHeld = false
      self.exchange.holdRequests(false)
    }
    return handler
  }

  /// A request refused before its call started: a trailers-only answer (with `status`, 200 unless
  /// the request is no gRPC-Web call at all).
  private func refuse(_ error: RPCError, status: HTTPResponseStatus = .ok, metadata: HPACKHeaders? = nil) {
    self.done = true
    var fields = HPACKHeaders()
    if self.engine.echoMetadata, let metadata { MetadataEcho.echo(metadata, into: &fields) }
    GRPCServerStreamState.addStatus(error, to: &fields)
    var headers = self.responseHeaders(fields, trailersOnly: true)
    if status == .methodNotAllowed { headers.add(name: "Allow", value: "POST, OPTIONS") }
    self.exchange.writeHead(status, headers: headers)
    // The body of a refused request is not read: a kept-alive HTTP/1.1 connection skips it.
    self.exchange.endResponse(reusable: true)
    self.exchange.flushSoon()
  }

  // MARK: - Writing

  private func writeHead() {
    self.headSent = true
    self.exchange.writeHead(.ok, headers: self.responseHeaders(self.initialMetadata, trailersOnly: false))
  }

  private func write(_ bytes: ByteBuffer) {
    let out = self.textResponse ? GRPCWebFraming.base64(bytes, allocator: self.exchange.allocator) : bytes
    self.metrics.bytes(.grpcWeb, .out, count: out.readableBytes)
    self.exchange.writeBody(out)
  }

  /// The response head's fields: the content type, CORS, and `fields` (metadata; the status too
  /// for a trailers-only answer), every one of them readable by a page's script.
  private func responseHeaders(_ fields: HPACKHeaders, trailersOnly: Bool) -> HTTPHeaders {
    var headers = self.cors
    headers.add(
      name: "Content-Type",
      value: GRPCWebFraming.ContentType(text: self.textResponse, json: self.contentType.json).mediaType)
    headers.add(name: "grpc-accept-encoding", value: GRPCServerStreamState.acceptedEncodings)
    if self.compressesResponses, !trailersOnly { headers.add(name: "grpc-encoding", value: "gzip") }
    // A trailers-only answer has no body (HTTP/1.1 would otherwise chunk an empty one).
    if trailersOnly { headers.add(name: "Content-Length", value: "0") }
    var exposed: [String] = ["grpc-status", "grpc-message"]
    for (name, value, _) in fields {
      headers.add(name: name, value: value)
      if !exposed.contains(name) { exposed.append(name) }
    }
    CORS.exposing(exposed, in: &headers)
    return headers
  }

  /// The call's metadata, as a native call's: pseudo-headers, then every request header but the
  /// hop-by-hop ones, the body's framing and the gateway's own (which no client may set).
  static func metadata(of request: HTTPExchangeRequest, path: String, secure: Bool) -> HPACKHeaders {
    var metadata: HPACKHeaders = [":method": "POST", ":scheme": secure ? "https" : "http", ":path": path]
    if let host = request.headers.first(name: "Host") { metadata.add(name: ":authority", value: host) }
    for (name, value) in request.headers {
      let key = name.lowercased()
      guard !MetadataKeys.isHopByHop(key), key != "content-length", !key.hasPrefix(MetadataKeys.gatewayPrefix)
      else { continue }
      metadata.add(name: key, value: value)
    }
    return metadata
  }
}

internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP1

/// One gRPC-Web call (gRPC's PROTOCOL-WEB) on an HTTP exchange of either port: the request body
/// is gRPC's length-prefixed messages (base64 for `application/grpc-web-text`, JSON messages for
/// `+json`), the response is 200 with the metadata as headers, the messages, and the status as a
/// last frame flagged 0x80; an error before any message is a trailers-only answer (the status in
/// the headers, no body), as Envoy's `grpc_web` filter gives it.
///
/// The framing only: the call's lifecycle, limits and end are `ExchangeCall`'s.
final class GRPCWebCall: ExchangeCall {
  private let contentType: GRPCWebFraming.ContentType
  /// The content type of a request whose codec is not supported (refused at `begin`).
  private let unsupportedContentType: String?
  /// Whether the response body is base64 (a text request, or `Accept: application/grpc-web-text`).
  private let textResponse: Bool
  private var deframer: GRPCMessageDeframer
  private var textDecoder = GRPCWebTextDecoder()
  /// `grpc-encoding: gzip`: messages flagged compressed are gzip.
  private var gzip = false
  private var compressesResponses = false
  private var headSent = false

  init(
    exchange: any HTTPExchange,
    request: HTTPExchangeRequest,
    contentType: GRPCWebFraming.ContentType?,
    engine: RPCEngine,
    bridge: JSONBridge,
    metrics: GatewayMetrics,
    cors: HTTPHeaders
  ) {
    self.contentType = contentType ?? GRPCWebFraming.ContentType(text: false, json: false)
    self.unsupportedContentType = contentType == nil ? request.headers.first(name: "Content-Type") ?? "" : nil
    self.textResponse =
      self.contentType.text
      || request.headers["Accept"].contains { $0.lowercased().contains("application/grpc-web-text") }
    self.deframer = GRPCMessageDeframer(maximumMessageBytes: engine.maximumMessageBytes)
    super.init(
      exchange: exchange, request: request, transport: .grpcWeb, engine: engine, bridge: bridge, metrics: metrics,
      cors: cors)
  }

  // MARK: - The request

  /// The request's head arrived: checks it, then routes, admits and starts the call.
  override func begin() {
    guard self.request.method == .POST else {
      return self.refuse(GRPCErrors.gRPCWebNotPOST(self.request.method.rawValue), status: .methodNotAllowed)
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
    self.start(timeout: timeout, json: self.contentType.json)
  }

  override func started(_ method: RPCMethod) {
    self.compressesResponses =
      method.compressesResponses && GRPCServerStreamState.acceptsGzip(self.lifecycle.call?.metadata ?? [:])
    // Over HTTP/2 a bidi client may wait for the headers before it sends; otherwise they wait for
    // the first message, so that an error before it is a trailers-only answer.
    if method.kind == .bidirectionalStreaming, self.exchange.isHTTP2 { self.writeHead() }
  }

  override var heldRequestBytes: Int { self.deframer.bufferedBytes }

  override func receivedBody(_ chunk: ByteBuffer) {
    self.metrics.bytes(.grpcWeb, .in, count: chunk.readableBytes)
    guard self.isReceiving else { return }
    if self.contentType.text {
      guard let decoded = self.textDecoder.decode(chunk) else { return self.stop(GRPCErrors.notBase64Body) }
      self.deframer.append(self.exchange.allocator.buffer(bytes: decoded))
    } else {
      self.deframer.append(chunk)
    }
    do throws(RPCError) {
      while let message = try self.deframer.next() {
        guard self.isReceiving else { return }
        guard message.flags & GRPCWebFraming.trailerFlag == 0 else { throw GRPCErrors.trailerFrameInRequest }
        try self.deliver(message.bytes, compressed: message.flags & 1 != 0, gzip: self.gzip)
      }
    } catch {
      return self.stop(error)
    }
    self.account()
  }

  override func receivedEnd() {
    super.receivedEnd()
    guard self.isReceiving else { return }
    if self.textDecoder.hasPartialGroup { return self.stop(GRPCErrors.notBase64Body) }
    if self.deframer.hasPartialMessage { return self.stop(GRPCErrors.truncatedMessage) }
    self.deliverEnd()
  }

  // MARK: - The response

  override func send(serialized message: [UInt8], compressed: Bool) {
    guard let payload = self.responsePayload(message) else { return }
    if !self.headSent { self.writeHead() }
    var frame = self.exchange.allocator.buffer(capacity: payload.count + 5)
    if compressed, self.compressesResponses,
      let gzipped = GzipMessage.deflate(payload, allocator: self.exchange.allocator)
    {
      frame.writeGRPCMessage(gzipped, compressed: true)
    } else {
      frame.writeGRPCMessage(bytes: payload)
    }
    self.writeFrame(frame)
    self.exchange.flushSoon()
  }

  override func headersReady() {
    guard !self.headSent else { return }
    self.writeHead()
    self.exchange.flushSoon()
  }

  override func writeEnd(_ error: RPCError?, trailers: HPACKHeaders) {
    if self.headSent {
      self.writeFrame(GRPCWebFraming.trailerFrame(error, trailers: trailers, allocator: self.exchange.allocator))
    } else {
      var fields = self.initialMetadata
      GRPCServerStreamState.addStatus(error, to: &fields)
      fields.add(contentsOf: trailers)
      self.exchange.writeHead(.ok, headers: self.responseHeaders(fields, trailersOnly: true))
    }
  }

  override func writeRefusal(_ error: RPCError, status: HTTPResponseStatus?) {
    var fields = self.initialMetadata
    GRPCServerStreamState.addStatus(error, to: &fields)
    var headers = self.responseHeaders(fields, trailersOnly: true)
    if status == .methodNotAllowed { headers.add(name: "Allow", value: "POST, OPTIONS") }
    self.exchange.writeHead(status ?? .ok, headers: headers)
  }

  private func writeHead() {
    self.headSent = true
    self.exchange.writeHead(.ok, headers: self.responseHeaders(self.initialMetadata, trailersOnly: false))
  }

  private func writeFrame(_ bytes: ByteBuffer) {
    self.write(self.textResponse ? GRPCWebFraming.base64(bytes, allocator: self.exchange.allocator) : bytes)
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
}

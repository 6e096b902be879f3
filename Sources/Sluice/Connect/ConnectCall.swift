internal import Foundation
internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP1
internal import SluiceCodec

/// One Connect call (connectrpc.com/docs/protocol) on an HTTP exchange of either port.
///
/// Unary (`application/proto`, or `application/json` with `Connect-Protocol-Version`; or a GET for
/// a method without side effects): the body is the message (`Content-Encoding: gzip` allowed); the
/// answer is 200 with the message, the response metadata as headers and the trailers as
/// `trailer-<key>` headers, or an error status from Connect's table with its error JSON. The one
/// response is held until the call ends, so an error after it still gets its status.
///
/// Streaming (`application/connect+proto|json`, every kind of method): enveloped messages both ways
/// (flag 0x01 compressed, `Connect-Content-Encoding`), the end of the request body the half-close,
/// and the status in a last envelope flagged 0x02 holding `{"error":…,"metadata":…}`; the HTTP
/// status stays 200.
///
/// The framing only: the call's lifecycle, limits and end are `ExchangeCall`'s.
final class ConnectCall: ExchangeCall {
  private let contentType: ConnectProtocol.ContentType
  private let unsupportedContentType: String?
  /// A unary call made with GET: the call its query describes.
  private let get: Result<ConnectProtocol.GetRequest, RPCError>?
  /// Streaming: the request's envelopes.
  private var deframer: GRPCMessageDeframer
  /// Unary: the body so far.
  private var body: ByteBuffer?
  /// Request bodies (unary) or envelopes (streaming) flagged compressed are gzip.
  private var gzipRequest = false
  /// The client reads gzip: responses worth it are compressed (`ResponseCompression`).
  private var gzipResponse = false
  /// Unary: the one response message, held until the end.
  private var heldResponse: [UInt8]?
  private var headSent = false

  init(
    exchange: any HTTPExchange,
    request: HTTPExchangeRequest,
    contentType: ConnectProtocol.ContentType?,
    engine: RPCEngine,
    bridge: JSONBridge,
    metrics: GatewayMetrics,
    cors: HTTPHeaders
  ) {
    if request.method == .GET {
      let get = ConnectProtocol.getRequest(uri: request.uri)
      self.get = get
      self.contentType = ConnectProtocol.ContentType(streaming: false, json: (try? get.get().json) ?? false)
      self.unsupportedContentType = nil
    } else {
      self.get = nil
      self.contentType = contentType ?? ConnectProtocol.ContentType(streaming: true, json: false)
      self.unsupportedContentType = contentType == nil ? request.headers.first(name: "Content-Type") ?? "" : nil
    }
    self.deframer = GRPCMessageDeframer(maximumMessageBytes: engine.maximumMessageBytes)
    super.init(
      exchange: exchange, request: request, transport: .connect, engine: engine, bridge: bridge, metrics: metrics,
      cors: cors)
  }

  private var streaming: Bool { self.contentType.streaming }

  // MARK: - The request

  override func begin() {
    if let get = self.get { return self.beginGet(get) }
    guard self.request.method == .POST else {
      return self.refuse(GRPCErrors.connectNotPOST(self.request.method.rawValue), status: .methodNotAllowed)
    }
    if let unsupported = self.unsupportedContentType {
      return self.refuse(GRPCErrors.connectCodec(unsupported), status: .unsupportedMediaType)
    }
    let encodingHeader = self.streaming ? "Connect-Content-Encoding" : "Content-Encoding"
    for encoding in self.request.headers[encodingHeader] {
      switch encoding.lowercased() {
      case "identity": break
      case "gzip": self.gzipRequest = true
      default: return self.refuse(GRPCErrors.unsupportedContentEncoding(encoding, header: encodingHeader))
      }
    }
    self.gzipResponse = ResponseCompression.acceptsGzip(
      self.request.headers[self.streaming ? "Connect-Accept-Encoding" : "Accept-Encoding"])
    self.startCall(message: nil)
  }

  /// A GET: allowed for methods whose descriptor says they have no side effects; the message comes
  /// from the query, and the call starts as a POST's would.
  private func beginGet(_ get: Result<ConnectProtocol.GetRequest, RPCError>) {
    let request: ConnectProtocol.GetRequest
    switch get {
    case .failure(let error): return self.refuse(error)
    case .success(let parsed): request = parsed
    }
    guard self.bridge.registry.method(path: self.path)?.hasNoSideEffects == true else {
      if let refusal = self.engine.credentialRefusal(self.request.headers["Authorization"]) {
        return self.refuse(refusal)
      }
      guard self.engine.router.method(path: self.path) != nil else {
        return self.refuse(GRPCErrors.unknownMethod(self.path))
      }
      return self.refuse(GRPCErrors.connectGetNotAllowed(self.path), status: .methodNotAllowed)
    }
    self.gzipRequest = request.gzip
    self.gzipResponse = ResponseCompression.acceptsGzip(self.request.headers["Accept-Encoding"])
    self.startCall(message: request.message)
  }

  private func startCall(message: [UInt8]?) {
    var timeout: Duration?
    if let value = self.request.headers.first(name: "Connect-Timeout-Ms") {
      guard let parsed = ConnectProtocol.timeout(value) else {
        return self.refuse(GRPCErrors.invalidConnectTimeout(value))
      }
      timeout = parsed
    }
    if !self.streaming { self.body = self.exchange.allocator.buffer(bytes: message ?? []) }
    // Connect's own headers (`connect-*`) and the body's encodings are framing, not metadata.
    self.start(timeout: timeout, json: self.contentType.json) { key in
      key == "content-encoding" || key == "accept-encoding" || key.hasPrefix("connect-")
    }
  }

  override func started(_ method: RPCMethod) {
    if !self.streaming, method.kind != .unary {
      // A streaming method asked for with a unary content type: Connect's unary protocol cannot carry it.
      return self.stop(GRPCErrors.connectUnaryForStreamingMethod(self.path))
    }
    if self.streaming, method.kind == .bidirectionalStreaming, self.exchange.isHTTP2 { self.writeStreamHead() }
  }

  override var heldRequestBytes: Int {
    self.streaming ? self.deframer.bufferedBytes : (self.body?.readableBytes ?? 0)
  }

  override var waitsForOneMessage: Bool { !self.streaming || super.waitsForOneMessage }

  override func receivedBody(_ chunk: ByteBuffer) {
    self.metrics.bytes(.connect, .in, count: chunk.readableBytes)
    guard self.isReceiving else { return }
    if self.streaming {
      self.deframer.append(chunk)
      do throws(RPCError) {
        while let message = try self.deframer.next() {
          guard self.isReceiving else { return }
          guard message.flags & ~ConnectProtocol.compressedFlag == 0 else {
            throw GRPCErrors.connectRequestFlags(message.flags)
          }
          try self.deliver(
            message.bytes, compressed: message.flags & ConnectProtocol.compressedFlag != 0, gzip: self.gzipRequest)
        }
      } catch {
        return self.stop(error)
      }
    } else if var body = self.body {
      self.body = nil  // unique while written to: no copy
      guard self.append(chunk, to: &body) else { return }
      self.body = body
    }
    self.account()
  }

  override func receivedEnd() {
    super.receivedEnd()
    guard self.isReceiving else { return }
    if self.streaming {
      if self.deframer.hasPartialMessage { return self.stop(GRPCErrors.truncatedMessage) }
    } else if let body = self.body {
      self.body = nil
      do throws(RPCError) {
        try self.deliver(body, compressed: self.gzipRequest, gzip: self.gzipRequest)
      } catch {
        return self.stop(error)
      }
    }
    self.deliverEnd()
  }

  // MARK: - The response

  override func send(serialized message: [UInt8], compressed: Bool) {
    guard let payload = self.responsePayload(message) else { return }
    guard self.streaming else {
      guard self.heldResponse == nil else { return self.stop(GRPCErrors.extraResponse) }
      self.heldResponse = payload
      return
    }
    if !self.headSent { self.writeStreamHead() }
    var frame = self.exchange.allocator.buffer(capacity: payload.count + 5)
    if let gzipped = ResponseCompression.gzipped(
      payload, accepts: self.gzipResponse, allocator: self.exchange.allocator)
    {
      frame.writeGRPCMessage(gzipped, compressed: true)  // flag 0x01: Connect's compressed flag too
    } else {
      frame.writeGRPCMessage(bytes: payload)
    }
    self.write(frame)
    self.exchange.flushSoon()
  }

  override func headersReady() {
    guard self.streaming, !self.headSent else { return }
    self.writeStreamHead()
    self.exchange.flushSoon()
  }

  override func finalStatus(_ error: RPCError?) -> RPCError? {
    if error == nil, !self.streaming, self.heldResponse == nil { return GRPCErrors.missingResponse }
    return error
  }

  override func writeEnd(_ error: RPCError?, trailers: HPACKHeaders) {
    if self.streaming {
      if !self.headSent { self.writeStreamHead() }
      self.write(self.endStreamEnvelope(error, trailers: trailers))
    } else if let error {
      self.writeUnaryError(error, trailers: trailers, status: nil)
    } else {
      self.writeUnaryResponse(self.heldResponse ?? [], trailers: trailers)
    }
  }

  override func writeRefusal(_ error: RPCError, status: HTTPResponseStatus?) {
    if self.streaming, status == nil {
      self.writeStreamHead()
      self.write(self.endStreamEnvelope(error, trailers: [:]))
    } else {
      self.writeUnaryError(error, trailers: [:], status: status)
    }
  }

  private func writeStreamHead() {
    self.headSent = true
    var headers = self.headers(self.initialMetadata, trailers: nil)
    headers.add(name: "Content-Type", value: self.contentType.mediaType)
    headers.add(name: "Connect-Accept-Encoding", value: "gzip")
    if self.gzipResponse { headers.add(name: "Connect-Content-Encoding", value: "gzip") }
    self.exchange.writeHead(.ok, headers: headers)
  }

  private func writeUnaryResponse(_ message: [UInt8], trailers: HPACKHeaders) {
    var headers = self.headers(self.initialMetadata, trailers: trailers)
    headers.add(name: "Content-Type", value: self.contentType.mediaType)
    headers.add(name: "Accept-Encoding", value: "gzip")
    var body = self.exchange.allocator.buffer(bytes: message)
    if let gzipped = ResponseCompression.gzipped(
      message, accepts: self.gzipResponse, allocator: self.exchange.allocator)
    {
      headers.add(name: "Content-Encoding", value: "gzip")
      body = gzipped
    }
    headers.add(name: "Content-Length", value: "\(body.readableBytes)")
    self.exchange.writeHead(.ok, headers: headers)
    self.write(body)
  }

  private func writeUnaryError(_ error: RPCError, trailers: HPACKHeaders, status: HTTPResponseStatus?) {
    var errorTrailers = HPACKHeaders()
    for (key, value) in error.metadata where key != "grpc-status-details-bin" {
      switch value {
      case .string(let string): errorTrailers.add(name: key, value: string)
      case .binary(let bytes): errorTrailers.add(name: key, value: Data(bytes).base64EncodedString())
      }
    }
    errorTrailers.add(contentsOf: trailers)
    var headers = self.headers(self.initialMetadata, trailers: errorTrailers)
    let body = JSONValue.object(ConnectProtocol.errorObject(error, trailers: trailers)).serializedBytes
    headers.add(name: "Content-Type", value: "application/json")
    headers.add(name: "Accept-Encoding", value: "gzip")
    headers.add(name: "Content-Length", value: "\(body.count)")
    if error.code == .unauthenticated { headers.add(name: "WWW-Authenticate", value: "Bearer") }
    if status == .methodNotAllowed { headers.add(name: "Allow", value: self.get != nil ? "POST" : "POST, OPTIONS") }
    self.exchange.writeHead(status ?? error.code.httpStatus, headers: headers)
    self.write(self.exchange.allocator.buffer(bytes: body))
  }

  /// `{"error":{…},"metadata":{…}}` flagged 0x02.
  private func endStreamEnvelope(_ error: RPCError?, trailers: HPACKHeaders) -> ByteBuffer {
    var object = JSONObject()
    var metadata = StatusJSON.json(trailers)
    if let error {
      object.members.append((key: "error", value: .object(ConnectProtocol.errorObject(error, trailers: trailers))))
      metadata.members += StatusJSON.json(error.metadata).members
    }
    if !metadata.isEmpty { object.members.append((key: "metadata", value: .object(metadata))) }
    let json = JSONValue.object(object).serializedBytes
    var frame = self.exchange.allocator.buffer(capacity: json.count + 5)
    frame.writeInteger(ConnectProtocol.endStreamFlag)
    frame.writeInteger(UInt32(truncatingIfNeeded: json.count))
    frame.writeBytes(json)
    return frame
  }

  /// CORS, the response metadata, and (unary) the trailers as `trailer-<key>`: every one readable
  /// by a page's script.
  private func headers(_ metadata: HPACKHeaders, trailers: HPACKHeaders?) -> HTTPHeaders {
    var headers = self.cors
    var exposed: [String] = []
    for (name, value, _) in metadata where !MetadataKeys.isFraming(name) {
      headers.add(name: name, value: value)
      if !exposed.contains(name) { exposed.append(name) }
    }
    for (name, value, _) in trailers ?? [:] where !MetadataKeys.isFraming(name) {
      headers.add(name: "trailer-\(name)", value: value)
      if !exposed.contains("trailer-\(name)") { exposed.append("trailer-\(name)") }
    }
    CORS.exposing(exposed, in: &headers)
    return headers
  }
}

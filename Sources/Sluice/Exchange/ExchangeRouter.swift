internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP1
internal import SluiceCodec

/// Picks the protocol of a request by its content type and headers (PROTOCOL.md, "Ports and
/// paths"), for both ports: the HTTP port asks it for every request that is not a WebSocket
/// handshake, the native port for every stream that is not native gRPC. It knows gRPC-Web and
/// Connect; what it does not know stays with the port (the HTTP port's JSON calls, files and `/metrics`; the native
/// port's gRPC, which refuses other content types).
final class ExchangeRouter: Sendable {
  let engine: RPCEngine
  let bridges: JSONBridgeSource
  let metrics: GatewayMetrics
  /// Which pages may call (`--allowed-origin`, `--allowed-host`), on both ports.
  let originPolicy: OriginPolicy

  init(engine: RPCEngine, bridges: JSONBridgeSource, metrics: GatewayMetrics, originPolicy: OriginPolicy) {
    self.engine = engine
    self.bridges = bridges
    self.metrics = metrics
    self.originPolicy = originPolicy
  }

  /// Whether a request with this media type (and `Connect-Protocol-Version`, if it has one) is one
  /// of the protocols routed here.
  static func routes(mediaType: String, connectProtocolVersion: String?) -> Bool {
    GRPCWebFraming.isGRPCWeb(mediaType)
      || ConnectProtocol.isConnect(mediaType: mediaType, protocolVersion: connectProtocolVersion)
  }

  /// Whether `request` is one of the protocols routed here by its headers (a Connect GET
  /// included); REST routes are matched by `routes(_:)`.
  static func routes(_ request: HTTPExchangeRequest) -> Bool {
    ConnectProtocol.isGet(method: request.method.rawValue, uri: request.uri)
      || Self.routes(
        mediaType: request.mediaType, connectProtocolVersion: request.headers.first(name: "Connect-Protocol-Version"))
  }

  /// Whether `request` is routed here: by its headers, or by its method and path on a REST route
  /// of the current descriptors (a path a route has with another method included: it gets 405).
  func routes(_ request: HTTPExchangeRequest) -> Bool {
    Self.routes(request) || self.hasRESTRoute(method: request.method.rawValue, path: Substring(request.path))
  }

  /// Whether an HTTP/2 stream with these headers is routed here (else it is native gRPC's).
  func routes(http2 headers: HPACKHeaders) -> Bool {
    let contentType = headers.first(name: "content-type") ?? ""
    if GRPCServerStreamState.isGRPCContentType(contentType) { return false }
    if Self.routes(
      mediaType: HTTPCall.mediaType(of: contentType),
      connectProtocolVersion: headers.first(name: "connect-protocol-version"))
      || ConnectProtocol.isGet(method: headers.first(name: ":method") ?? "", uri: headers.first(name: ":path") ?? "")
    {
      return true
    }
    guard let method = headers.first(name: ":method"), let uri = headers.first(name: ":path") else { return false }
    return self.hasRESTRoute(method: method, path: uri.firstIndex(of: "?").map { uri[..<$0] } ?? Substring(uri))
  }

  /// Whether a REST route of the current descriptors has this path (with this method or another:
  /// the other gets 405).
  private func hasRESTRoute(method: String, path: Substring) -> Bool {
    let rest = self.bridges.current.rest
    guard !rest.isEmpty else { return false }
    if case .none = rest.match(httpMethod: method, path: path) { return false }
    return true
  }

  /// The adapter for `request`, begun (it may have answered already: a refusal), or nil when the
  /// request is none of the protocols routed here. The caller has checked its origin.
  func handler(
    for request: HTTPExchangeRequest, on exchange: any HTTPExchange, cors: HTTPHeaders
  ) -> (any HTTPExchangeHandler)? {
    let mediaType = request.mediaType
    let connect = ConnectProtocol.contentType(
      mediaType: mediaType, protocolVersion: request.headers.first(name: "Connect-Protocol-Version"))
    let (engine, bridge, metrics) = (self.engine, self.bridges.current, self.metrics)
    let call: ExchangeCall
    if connect.0 != nil || connect.unsupported
      || ConnectProtocol.isGet(method: request.method.rawValue, uri: request.uri)
    {
      call = ConnectCall(
        exchange: exchange, request: request, contentType: connect.0, engine: engine, bridge: bridge, metrics: metrics,
        cors: cors)
    } else if GRPCWebFraming.isGRPCWeb(mediaType) {
      call = GRPCWebCall(
        exchange: exchange, request: request, contentType: GRPCWebFraming.contentType(mediaType), engine: engine,
        bridge: bridge, metrics: metrics, cors: cors)
    } else {
      switch bridge.rest.match(httpMethod: request.method.rawValue, path: Substring(request.path)) {
      case .route(let route, let bindings):
        call = RESTCall(
          exchange: exchange, request: request, route: route, bindings: bindings, engine: engine, bridge: bridge,
          metrics: metrics, cors: cors)
      case .methodNotAllowed(let allowed):
        return Self.refuse(
          GRPCErrors.restMethodNotAllowed(request.method.rawValue, allowed: allowed), status: .methodNotAllowed,
          allow: allowed, request: request, engine: engine, on: exchange, cors: cors)
      case .badPath(let why):
        return Self.refuse(
          GRPCErrors.restPath(why), status: .badRequest, allow: [], request: request, engine: engine, on: exchange,
          cors: cors)
      case .none:
        return nil
      }
    }
    call.begin()
    return call
  }

  /// Refuses a request for what it tells about the REST routes (405 with `Allow`, 400), once its
  /// credentials pass: without them it gets the 401 every call gets, so the routes cannot be
  /// enumerated.
  private static func refuse(
    _ error: RPCError,
    status: HTTPResponseStatus,
    allow: [String],
    request: HTTPExchangeRequest,
    engine: RPCEngine,
    on exchange: any HTTPExchange,
    cors: HTTPHeaders
  ) -> any HTTPExchangeHandler {
    if let refusal = engine.credentialRefusal(request.headers["Authorization"]) {
      return Self.answer(refusal, status: .unauthorized, allow: [], on: exchange, cors: cors)
    }
    return Self.answer(error, status: status, allow: allow, on: exchange, cors: cors)
  }

  /// Answers a request no call is made for (the HTTP JSON error body); its body is skipped.
  private static func answer(
    _ error: RPCError, status: HTTPResponseStatus, allow: [String], on exchange: any HTTPExchange, cors: HTTPHeaders
  ) -> any HTTPExchangeHandler {
    let body = JSONValue.object(StatusJSON.status(code: error.code, message: error.message)).serializedBytes
    var headers = cors
    headers.add(name: "Content-Type", value: "application/json")
    headers.add(name: "Content-Length", value: "\(body.count)")
    if !allow.isEmpty { headers.add(name: "Allow", value: allow.joined(separator: ", ")) }
    if error.code == .unauthenticated { headers.add(name: "WWW-Authenticate", value: "Bearer") }
    exchange.writeHead(status, headers: headers)
    exchange.writeBody(exchange.allocator.buffer(bytes: body))
    exchange.endResponse(reusable: true)
    exchange.flushSoon()
    return AnsweredExchange()
  }
}

/// The handler of a request answered at once: what still arrives of it is dropped.
final class AnsweredExchange: HTTPExchangeHandler {
  func receivedBody(_ bytes: ByteBuffer) {}
  func receivedEnd() {}
  func becameWritable() {}
  func exchangeGone() {}
  func quiesce() {}
}

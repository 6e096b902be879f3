internal import NIOCore
internal import NIOHTTP1

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

  /// Whether `request` is one of the protocols routed here (a Connect GET included).
  static func routes(_ request: HTTPExchangeRequest) -> Bool {
    ConnectProtocol.isGet(method: request.method.rawValue, uri: request.uri)
      || Self.routes(
        mediaType: request.mediaType, connectProtocolVersion: request.headers.first(name: "Connect-Protocol-Version"))
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
      return nil
    }
    call.begin()
    return call
  }
}

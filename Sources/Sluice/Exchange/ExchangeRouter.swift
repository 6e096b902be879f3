internal import NIOCore
internal import NIOHTTP1

/// Picks the protocol of a request by its content type and headers (PROTOCOL.md, "Ports and
/// paths"), for both ports: the HTTP port asks it for every request that is not a WebSocket
/// handshake, the native port for every stream that is not native gRPC. It knows gRPC-Web; what it
/// does not know stays with the port (the HTTP port's JSON calls, files and `/metrics`; the native
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

  /// Whether a request with this media type is one of the protocols routed here.
  static func routes(mediaType: String) -> Bool {
    GRPCWebFraming.isGRPCWeb(mediaType)
  }

  /// The adapter for `request`, begun (it may have answered already: a refusal), or nil when the
  /// request is none of the protocols routed here. The caller has checked its origin.
  func handler(
    for request: HTTPExchangeRequest, on exchange: any HTTPExchange, cors: HTTPHeaders
  ) -> (any HTTPExchangeHandler)? {
    let mediaType = request.mediaType
    guard GRPCWebFraming.isGRPCWeb(mediaType) else { return nil }
    let call = GRPCWebCall(
      exchange: exchange,
      request: request,
      contentType: GRPCWebFraming.contentType(mediaType),
      engine: self.engine,
      bridge: self.bridges.current,
      metrics: self.metrics,
      cors: cors
    )
    call.begin()
    return call
  }
}

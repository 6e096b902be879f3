internal import CoreMetrics
internal import Prometheus
internal import Synchronization

/// The gateway's metrics, exported in Prometheus text format on `GET /metrics`.
///
/// The instruments are swift-metrics types made by a swift-prometheus factory owned by this
/// object (not the process-wide `MetricsSystem`), so every `Gateway`, including the many in one
/// test process, has its own registry.
///
/// | metric | labels | meaning |
/// |---|---|---|
/// | `sluice_connections_open` | `transport` (`grpc`, `http`, `websocket`) | open native gRPC (HTTP/2) and HTTP/1.1 connections, WebSocket sessions |
/// | `sluice_rpcs_active` | `method`, `transport` (`grpc`, `websocket`, `http`) | RPCs whose handler is running |
/// | `sluice_rpcs_total` | `method`, `transport`, `code` | ended RPCs by status code (`ok`, `cancelled`, …) |
/// | `sluice_rpcs_refused_total` | `transport`, `code` | RPCs refused before they were let in (`unauthenticated`, `unimplemented`, `resource_exhausted`): no method label, so a caller cannot add series |
/// | `sluice_messages_total` | `transport`, `direction` (`in`, `out`) | messages received from / sent to clients |
/// | `sluice_bytes_total` | `transport` (`websocket`, `http`), `direction` | payload bytes of JSON front-end frames and bodies |
public final class GatewayMetrics: Sendable {
  /// Where a call came from.
  public enum Transport: String, Sendable, CaseIterable {
    case grpc, websocket, http
    case grpcWeb = "grpc-web"
    case connect
    /// REST routes from `google.api.http` rules.
    case rest
  }

  /// Which way a message or byte went, seen from the gateway.
  public enum Direction: String, Sendable, CaseIterable {
    case `in`, out
  }

  private let registry: PrometheusCollectorRegistry
  private let factory: PrometheusMetricsFactory
  private let messageCounters: [Transport: [Direction: CoreMetrics.Counter]]
  private let byteCounters: [Transport: [Direction: CoreMetrics.Counter]]
  private let connections: [Transport: CoreMetrics.Meter]
  /// Per-RPC instruments, made once per label set: making one through the Prometheus factory
  /// takes its registry's lock and allocates, which measured 8 % of a native unary call.
  private let rpcInstruments = Mutex(RPCInstruments())

  private struct RPCInstruments {
    var active: [RPCLabels: CoreMetrics.Meter] = [:]
    var ended: [RPCLabels: CoreMetrics.Counter] = [:]
    var refused: [RPCLabels: CoreMetrics.Counter] = [:]
  }

  private struct RPCLabels: Hashable {
    var method: String
    var transport: Transport
    var code: String?
  }

  public init() {
    self.registry = PrometheusCollectorRegistry()
    self.factory = PrometheusMetricsFactory(registry: self.registry)
    var messages: [Transport: [Direction: CoreMetrics.Counter]] = [:]
    var bytes: [Transport: [Direction: CoreMetrics.Counter]] = [:]
    var connections: [Transport: CoreMetrics.Meter] = [:]
    for transport in Transport.allCases {
      for direction in Direction.allCases {
        let dimensions = [("transport", transport.rawValue), ("direction", direction.rawValue)]
        messages[transport, default: [:]][direction] = CoreMetrics.Counter(
          label: "sluice_messages_total",
          dimensions: dimensions,
          factory: self.factory
        )
        // Bytes are the JSON front ends' own; grpc-swift does not expose them.
        guard transport != .grpc else { continue }
        bytes[transport, default: [:]][direction] = CoreMetrics.Counter(
          label: "sluice_bytes_total",
          dimensions: dimensions,
          factory: self.factory
        )
      }
      // gRPC-Web, Connect and REST have no connections of their own: they run on the HTTP and native
      // ports'.
      guard transport != .grpcWeb, transport != .connect, transport != .rest else { continue }
      connections[transport] = CoreMetrics.Meter(
        label: "sluice_connections_open",
        dimensions: [("transport", transport.rawValue)],
        factory: self.factory
      )
    }
    self.messageCounters = messages
    self.byteCounters = bytes
    self.connections = connections
  }

  /// Every metric in Prometheus text exposition format.
  public func exposition() -> [UInt8] {
    self.registry.emitToBuffer()
  }

  /// A connection or session opened; `connectionClosed` when it ends.
  func connectionOpened(_ transport: Transport) {
    self.connections[transport]?.increment()
  }

  func connectionClosed(_ transport: Transport) {
    self.connections[transport]?.decrement()
  }

  /// An RPC's handler started.
  func rpcStarted(method: String, transport: Transport) {
    self.activeRPCs(method: method, transport: transport).increment()
  }

  /// An RPC's handler stopped with `code` (`ok` or the gRPC status code's name).
  func rpcEnded(method: String, transport: Transport, code: String) {
    self.activeRPCs(method: method, transport: transport).decrement()
    let labels = RPCLabels(method: method, transport: transport, code: code)
    let counter = self.rpcInstruments.withLock { instruments in
      if let counter = instruments.ended[labels] { return counter }
      let counter = CoreMetrics.Counter(
        label: "sluice_rpcs_total",
        dimensions: [("method", method), ("transport", transport.rawValue), ("code", code)],
        factory: self.factory
      )
      instruments.ended[labels] = counter
      return counter
    }
    counter.increment()
  }

  /// An RPC was refused before it was let in (no credentials, no such method, no slot).
  func rpcRefused(transport: Transport, code: String) {
    let labels = RPCLabels(method: "", transport: transport, code: code)
    let counter = self.rpcInstruments.withLock { instruments in
      if let counter = instruments.refused[labels] { return counter }
      let counter = CoreMetrics.Counter(
        label: "sluice_rpcs_refused_total",
        dimensions: [("transport", transport.rawValue), ("code", code)],
        factory: self.factory
      )
      instruments.refused[labels] = counter
      return counter
    }
    counter.increment()
  }

  /// Counts `count` messages.
  func messages(_ transport: Transport, _ direction: Direction, count: Int = 1) {
    self.messageCounters[transport]?[direction]?.increment(by: count)
  }

  /// Counts `count` payload bytes.
  func bytes(_ transport: Transport, _ direction: Direction, count: Int) {
    self.byteCounters[transport]?[direction]?.increment(by: count)
  }

  private func activeRPCs(method: String, transport: Transport) -> CoreMetrics.Meter {
    let labels = RPCLabels(method: method, transport: transport)
    return self.rpcInstruments.withLock { instruments in
      if let meter = instruments.active[labels] { return meter }
      let meter = CoreMetrics.Meter(
        label: "sluice_rpcs_active",
        dimensions: [("method", method), ("transport", transport.rawValue)],
        factory: self.factory
      )
      instruments.active[labels] = meter
      return meter
    }
  }
}

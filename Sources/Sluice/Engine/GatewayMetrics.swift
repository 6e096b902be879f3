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
  /// By `slot(transport, direction)`: an array, so counting a call's messages hashes nothing.
  private let messageCounters: [CoreMetrics.Counter]
  private let byteCounters: [CoreMetrics.Counter?]
  private let connections: [Transport: CoreMetrics.Meter]
  /// Per-RPC instruments, made once per label set: making one through the Prometheus factory
  /// takes its registry's lock and allocates, which measured 8 % of a native unary call.
  private let rpcInstruments = Mutex(RPCInstruments())

  private struct RPCInstruments {
    var series: [RPCLabels: RPCSeries] = [:]
    var ended: [RPCLabels: CoreMetrics.Counter] = [:]
    var refused: [RPCLabels: CoreMetrics.Counter] = [:]
  }

  /// One method's instruments on one transport, looked up once when a call begins (`series`):
  /// the call then counts itself without a dictionary lookup, and an OK end without a lock on
  /// every series.
  final class RPCSeries: Sendable {
    let method: String
    let transport: Transport
    fileprivate let active: CoreMetrics.Meter
    /// This method's calls on this transport in flight (`activeRPCs`).
    fileprivate let running = Atomic<Int>(0)
    /// `sluice_rpcs_total{code="ok"}`, made at the first OK end (not before: a method that only
    /// ever failed has no `ok` series).
    fileprivate let ok = Mutex<CoreMetrics.Counter?>(nil)

    fileprivate init(method: String, transport: Transport, active: CoreMetrics.Meter) {
      self.method = method
      self.transport = transport
      self.active = active
    }
  }

  private struct RPCLabels: Hashable {
    var method: String
    var transport: Transport
    var code: String?
  }

  public init() {
    self.registry = PrometheusCollectorRegistry()
    self.factory = PrometheusMetricsFactory(registry: self.registry)
    var messages: [CoreMetrics.Counter] = []
    var bytes: [CoreMetrics.Counter?] = []
    var connections: [Transport: CoreMetrics.Meter] = [:]
    for transport in Transport.allCases {
      for direction in Direction.allCases {
        assert(Self.slot(transport, direction) == messages.count, "slot order is allCases order")
        let dimensions = [("transport", transport.rawValue), ("direction", direction.rawValue)]
        messages.append(
          CoreMetrics.Counter(label: "sluice_messages_total", dimensions: dimensions, factory: self.factory))
        // Bytes are the JSON front ends' own; grpc-swift does not expose them.
        bytes.append(
          transport == .grpc
            ? nil : CoreMetrics.Counter(label: "sluice_bytes_total", dimensions: dimensions, factory: self.factory))
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

  /// An RPC of `method` (its label) on `transport` started; `rpcEnded` with the series returned.
  func rpcStarted(method: String, transport: Transport) -> RPCSeries {
    let labels = RPCLabels(method: method, transport: transport)
    let series = self.rpcInstruments.withLock { instruments in
      if let series = instruments.series[labels] { return series }
      let series = RPCSeries(
        method: method,
        transport: transport,
        active: CoreMetrics.Meter(
          label: "sluice_rpcs_active",
          dimensions: [("method", method), ("transport", transport.rawValue)],
          factory: self.factory
        )
      )
      instruments.series[labels] = series
      return series
    }
    series.running.add(1, ordering: .relaxed)
    series.active.increment()
    return series
  }

  /// An RPC stopped with `code` (`ok` or the gRPC status code's name).
  func rpcEnded(_ series: RPCSeries, code: String) {
    series.running.subtract(1, ordering: .relaxed)
    series.active.decrement()
    if code == "ok" {
      series.ok.withLock { ok in
        if ok == nil { ok = self.endedCounter(series, code: code) }
        ok?.increment()
      }
    } else {
      self.endedCounter(series, code: code).increment()
    }
  }

  private func endedCounter(_ series: RPCSeries, code: String) -> CoreMetrics.Counter {
    let labels = RPCLabels(method: series.method, transport: series.transport, code: code)
    return self.rpcInstruments.withLock { instruments in
      if let counter = instruments.ended[labels] { return counter }
      let counter = CoreMetrics.Counter(
        label: "sluice_rpcs_total",
        dimensions: [("method", series.method), ("transport", series.transport.rawValue), ("code", code)],
        factory: self.factory
      )
      instruments.ended[labels] = counter
      return counter
    }
  }

  /// The RPCs in flight, of every method or of one (its label).
  func activeRPCs(method: String?) -> Int {
    self.rpcInstruments.withLock { instruments in
      instruments.series.values.reduce(0) { total, series in
        guard method == nil || series.method == method else { return total }
        return total + series.running.load(ordering: .relaxed)
      }
    }
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
    guard count > 0 else { return }
    self.messageCounters[Self.slot(transport, direction)].increment(by: count)
  }

  /// Counts `count` payload bytes.
  func bytes(_ transport: Transport, _ direction: Direction, count: Int) {
    self.byteCounters[Self.slot(transport, direction)]?.increment(by: count)
  }

  /// Where a transport's and direction's counter is in `messageCounters` and `byteCounters`.
  private static func slot(_ transport: Transport, _ direction: Direction) -> Int {
    let row =
      switch transport {
      case .grpc: 0
      case .websocket: 1
      case .http: 2
      case .grpcWeb: 3
      case .connect: 4
      case .rest: 5
      }
    return row * 2 + (direction == .in ? 0 : 1)
  }
}

internal import GRPCCore
public import Logging
internal import Synchronization

/// Counts the RPCs in flight, by method, and their messages, exports them as metrics, and logs
/// one line per ended RPC, for every front end (`RPCEngine.admit` … `release`).
///
/// An RPC counts as in flight from the moment it is routed until it has ended, so a cancelled
/// stream leaves the count as soon as its handler has been stopped.
public final class RPCMonitor: Sendable {
  /// How many method names a client chose (under an upstream without descriptors) get series of
  /// their own; the rest are counted as `undeclaredLabel`, so that no client can grow `/metrics`.
  static let maxUndeclaredLabels = 100
  static let undeclaredLabel = "(undeclared)"
  /// A method name in a log line is cut to this many bytes.
  static let maxLoggedNameBytes = 256

  /// The undeclared method names that have a label of their own.
  private let undeclared = Mutex<Set<String>>([])
  private let metrics: GatewayMetrics
  private let logger: Logger
  /// Whether the per-RPC line is written (the log level is info or lower): only then does a call's
  /// `traceparent` need to be read.
  let logsCalls: Bool

  /// Creates a monitor.
  /// - Parameters:
  ///   - metrics: Where the counts are exported.
  ///   - logger: Receives one info line per ended RPC.
  public init(metrics: GatewayMetrics, logger: Logger) {
    self.metrics = metrics
    self.logger = logger
    self.logsCalls = logger.logLevel <= .info
  }

  /// The number of RPCs in flight, for all methods or for one (`proto.StreamService/List`).
  public func activeRPCs(method: String? = nil) -> Int {
    self.metrics.activeRPCs(method: method)
  }

  /// An RPC being counted by the engine, from `begin` to `end`.
  struct Ticket {
    /// The method's label and transport in metrics.
    let series: GatewayMetrics.RPCSeries
    /// The method's name as the log line shows it (cut short when a client chose it long).
    let loggedName: String
    var transport: GatewayMetrics.Transport { self.series.transport }
    let start: ContinuousClock.Instant
    /// The request's W3C `traceparent`, whose trace id the log line carries.
    let traceParent: String?
  }

  /// The engine routed an RPC: it counts as in flight until `end`.
  func begin(method: RPCMethod, transport: GatewayMetrics.Transport, traceParent: String? = nil) -> Ticket {
    var label = method.name
    if !method.declared {
      label = self.undeclared.withLock { undeclared in
        if undeclared.contains(label) { return label }
        guard undeclared.count < Self.maxUndeclaredLabels else { return Self.undeclaredLabel }
        undeclared.insert(label)
        return label
      }
    }
    let series = self.metrics.rpcStarted(method: label, transport: transport)
    return Ticket(series: series, loggedName: Self.logged(method.name), start: .now, traceParent: traceParent)
  }

  /// `name`, cut to `maxLoggedNameBytes` (a scalar cut in two shows as U+FFFD).
  static func logged(_ name: String) -> String {
    guard name.utf8.count > Self.maxLoggedNameBytes else { return name }
    return String(decoding: name.utf8.prefix(Self.maxLoggedNameBytes), as: UTF8.self) + "…"
  }

  /// The engine refused an RPC before letting it in: counted by transport and code only.
  func refused(transport: GatewayMetrics.Transport, code: RPCError.Code) {
    self.metrics.rpcRefused(transport: transport, code: "\(code)")
  }

  /// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), or nil when the value
  /// is not one (or its trace id is all zeros, which the specification makes invalid).
  static func traceID(_ traceParent: String) -> Substring? {
    let parts = traceParent.split(separator: "-", omittingEmptySubsequences: false)
    guard parts.count >= 4, parts[0].count == 2, parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
      parts[0] != "ff", parts.allSatisfy({ $0.allSatisfy(\.isHexDigit) && $0.lowercased() == $0 }),
      parts[1].contains(where: { $0 != "0" })
    else { return nil }
    return parts[1]
  }

  /// The engine's RPC ended with `code` (`ok` or the status code's name).
  func end(_ ticket: Ticket, code: String, received: Int, sent: Int) {
    self.metrics.rpcEnded(ticket.series, code: code)
    self.metrics.messages(ticket.transport, .in, count: received)
    self.metrics.messages(ticket.transport, .out, count: sent)
    self.logger.info(
      "RPC finished",
      metadata: [
        "sluice.rpc.method": "\(ticket.loggedName)",
        "sluice.rpc.transport": "\(ticket.transport.rawValue)",
        "sluice.rpc.code": "\(code)",
        "sluice.rpc.duration": "\(ContinuousClock.now - ticket.start)",
        "sluice.rpc.messages_in": "\(received)",
        "sluice.rpc.messages_out": "\(sent)",
        "sluice.rpc.trace_id": "\(ticket.traceParent.flatMap(Self.traceID) ?? "-")",
      ]
    )
  }
}

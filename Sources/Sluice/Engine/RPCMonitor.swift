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

  private struct Counts {
    var active: [String: Int] = [:]
    /// The undeclared method names that have a label of their own.
    var undeclared: Set<String> = []
  }

  private let counts: Mutex<Counts>
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
    self.counts = Mutex(Counts())
    self.metrics = metrics
    self.logger = logger
    self.logsCalls = logger.logLevel <= .info
  }

  /// The number of RPCs in flight, for all methods or for one (`proto.StreamService/List`).
  public func activeRPCs(method: String? = nil) -> Int {
    self.counts.withLock { counts in
      if let method { counts.active[method, default: 0] } else { counts.active.values.reduce(0, +) }
    }
  }

  /// An RPC being counted by the engine, from `begin` to `end`.
  struct Ticket {
    /// The method's label in metrics.
    let method: String
    /// The method's name as the log line shows it (cut short when a client chose it long).
    let loggedName: String
    let transport: GatewayMetrics.Transport
    let start: ContinuousClock.Instant
    /// The request's W3C `traceparent`, whose trace id the log line carries.
    let traceParent: String?
  }

  /// The engine routed an RPC: it counts as in flight until `end`.
  func begin(method: RPCMethod, transport: GatewayMetrics.Transport, traceParent: String? = nil) -> Ticket {
    let label = self.counts.withLock { counts in
      var label = method.name
      if !method.declared, !counts.undeclared.contains(label) {
        if counts.undeclared.count < Self.maxUndeclaredLabels {
          counts.undeclared.insert(label)
        } else {
          label = Self.undeclaredLabel
        }
      }
      counts.active[label, default: 0] += 1
      return label
    }
    self.metrics.rpcStarted(method: label, transport: transport)
    return Ticket(
      method: label, loggedName: Self.logged(method.name), transport: transport, start: .now, traceParent: traceParent)
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
    self.counts.withLock { counts in
      counts.active[ticket.method, default: 1] -= 1
      if counts.active[ticket.method] == 0 { counts.active[ticket.method] = nil }
    }
    self.metrics.rpcEnded(method: ticket.method, transport: ticket.transport, code: code)
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

public import Logging
internal import Synchronization

/// Counts the RPCs in flight, by method, and their messages, exports them as metrics, and logs
/// one line per ended RPC, for every front end (`RPCEngine.admit` … `release`).
///
/// An RPC counts as in flight from the moment it is routed until it has ended, so a cancelled
/// stream leaves the count as soon as its handler has been stopped.
public final class RPCMonitor: Sendable {
  private let active: Mutex<[String: Int]>
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
    self.active = Mutex([:])
    self.metrics = metrics
    self.logger = logger
    self.logsCalls = logger.logLevel <= .info
  }

  /// The number of RPCs in flight, for all methods or for one (`proto.StreamService/List`).
  public func activeRPCs(method: String? = nil) -> Int {
    self.active.withLock { counts in
      if let method { counts[method, default: 0] } else { counts.values.reduce(0, +) }
    }
  }

  /// An RPC being counted by the engine, from `begin` to `end`.
  struct Ticket {
    let method: String
    let transport: GatewayMetrics.Transport
    let start: ContinuousClock.Instant
    /// The request's W3C `traceparent`, whose trace id the log line carries.
    let traceParent: String?
  }

  /// The engine routed an RPC: it counts as in flight until `end`.
  func begin(method: String, transport: GatewayMetrics.Transport, traceParent: String? = nil) -> Ticket {
    self.active.withLock { $0[method, default: 0] += 1 }
    self.metrics.rpcStarted(method: method, transport: transport)
    return Ticket(method: method, transport: transport, start: .now, traceParent: traceParent)
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
    self.active.withLock { counts in
      counts[ticket.method, default: 1] -= 1
      if counts[ticket.method] == 0 { counts[ticket.method] = nil }
    }
    self.metrics.rpcEnded(method: ticket.method, transport: ticket.transport, code: code)
    self.metrics.messages(ticket.transport, .in, count: received)
    self.metrics.messages(ticket.transport, .out, count: sent)
    self.logger.info(
      "RPC finished",
      metadata: [
        "sluice.rpc.method": "\(ticket.method)",
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

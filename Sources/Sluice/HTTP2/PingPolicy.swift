internal import NIOCore

/// grpc-go's server PING policy (its `keepalive.EnforcementPolicy` defaults), as a value: a PING
/// counts as a strike when it comes sooner than `minimumInterval` after the previous one (or,
/// with no stream open, at all within two hours) and the server has sent no HEADERS or DATA
/// since; the third strike ends the connection with GOAWAY `ENHANCE_YOUR_CALM`.
///
/// So grpc-go's default clients, which PING with most reads while their flow-control window
/// estimate grows (BDP probing), are never struck (every PING follows data), while a client that
/// floods PINGs is stopped after three. nghttp2 has no PING policy of its own; no library has
/// grpc-go's rule, hence this.
struct PingPolicy {
  /// Pings closer than this count as strikes when nothing was sent between them (grpc-go: 5 min).
  var minimumInterval: TimeAmount = .minutes(5)
  /// Pings with no stream open closer than this count as strikes (grpc-go: 2 h).
  var idleInterval: TimeAmount = .hours(2)
  /// Strikes allowed; one more ends the connection (grpc-go: 2).
  var maximumStrikes = 2

  private var strikes = 0
  private var lastPing: NIODeadline?

  /// A PING arrived at `now`; true when it is one too many.
  mutating func receivedPing(at now: NIODeadline, openStreams: Int, sentSinceLastPing: Bool) -> Bool {
    defer { self.lastPing = now }
    if sentSinceLastPing {
      self.strikes = 0
      return false
    }
    guard let last = self.lastPing else { return false }
    let interval = openStreams > 0 ? self.minimumInterval : self.idleInterval
    guard now - last < interval else { return false }
    self.strikes += 1
    return self.strikes > self.maximumStrikes
  }
}

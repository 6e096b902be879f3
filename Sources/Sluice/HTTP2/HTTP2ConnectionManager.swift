internal import NIOCore

/// Connection management for a server HTTP/2 connection, as a value: the handshake timeout, idle
/// and age limits with their grace, keepalive PINGs, grpc-go's PING policy, and the two-phase
/// GOAWAY of a graceful shutdown. It holds no timers and no socket: the connection feeds it
/// events and the current time, and carries out the actions it returns (schedule a timer, send a
/// frame, close), so every rule is tested without sockets (HTTP2ConnectionManagerTests). Models:
/// grpc-swift-nio-transport's `ServerConnectionManagementHandler+StateMachine` and Hummingbird's
/// `HTTP2ServerConnectionManager+StateMachine`.
///
/// Timers are never cancelled while the connection lives: each one, when it fires, asks the
/// machine whether its reason still holds (a read since the keepalive PING, a stream opened since
/// idle began), so the per-read and per-stream events below return nothing and cost no timer work.
struct HTTP2ConnectionManager {
  struct Configuration {
    /// A client that has sent no frame by then is closed.
    var handshakeTimeout: TimeAmount
    /// A connection with no stream open this long is drained (`--grpc-max-connection-idle`).
    var maxIdle: TimeAmount?
    /// A connection this old is drained (`--grpc-max-connection-age`) ...
    var maxAge: TimeAmount?
    /// ... and closed this much later if streams are still open (`--grpc-max-connection-age-grace`).
    var maxAgeGrace: TimeAmount?
    /// A PING once nothing was read for this long; closed if nothing is read `keepaliveTimeout` after.
    var keepaliveInterval: TimeAmount = .hours(2)
    var keepaliveTimeout: TimeAmount = .seconds(20)
    /// How long the first GOAWAY (shutdown notice) travels before the final one.
    var goAwayDelay: TimeAmount = .seconds(1)
  }

  enum Timer: Hashable, CaseIterable {
    case handshake, idle, age, grace, keepalive, keepaliveTimeout, goAway
  }

  enum Action: Equatable {
    /// Fire `timer` at this deadline (replacing one of the same kind).
    case schedule(Timer, NIODeadline)
    /// The first GOAWAY of a graceful shutdown (the highest stream ID), then flush.
    case sendShutdownNotice
    /// The final GOAWAY, NO_ERROR, naming the last stream processed; flush it now.
    case sendGoAway
    /// A keepalive PING, then flush.
    case sendPing
    /// GOAWAY ENHANCE_YOUR_CALM "too_many_pings", flushed, then close.
    case sendTooManyPings
    /// Close the connection now.
    case close
  }

  let configuration: Configuration
  private var pingPolicy = PingPolicy()
  private var openStreams = 0
  private var sentSinceLastPing = false
  private var receivedFrame = false
  /// When the connection last read bytes (keepalive) and since when no stream is open (idle).
  private var lastRead: NIODeadline
  private var idleSince: NIODeadline?
  /// When the last keepalive PING went out (its timeout checks for a read after it).
  private var pingSentAt: NIODeadline?
  private(set) var isDraining = false
  /// The final GOAWAY is out: the connection closes once no stream is left.
  private(set) var sentFinalGoAway = false

  init(configuration: Configuration, now: NIODeadline) {
    self.configuration = configuration
    self.lastRead = now
    self.idleSince = now
  }

  /// The connection started: the timers it begins with.
  func start(now: NIODeadline) -> [Action] {
    var actions: [Action] = [.schedule(.handshake, now + self.configuration.handshakeTimeout)]
    if let maxAge = self.configuration.maxAge { actions.append(.schedule(.age, now + maxAge)) }
    if let maxIdle = self.configuration.maxIdle { actions.append(.schedule(.idle, now + maxIdle)) }
    actions.append(.schedule(.keepalive, now + self.configuration.keepaliveInterval))
    return actions
  }

  // MARK: - Per-read and per-stream events (no actions)

  /// Bytes arrived (`frames`: the session has parsed a whole frame by now).
  mutating func read(at now: NIODeadline, frames: Bool) {
    self.lastRead = now
    if frames { self.receivedFrame = true }
  }

  mutating func streamOpened() {
    self.openStreams += 1
    self.idleSince = nil
  }

  mutating func streamClosed(at now: @autoclosure () -> NIODeadline) {
    self.openStreams = max(0, self.openStreams - 1)
    if self.openStreams == 0 { self.idleSince = now() }
  }

  /// The connection sent HEADERS or DATA (the PING policy forgives PINGs that follow data).
  mutating func sentFrames() {
    self.sentSinceLastPing = true
  }

  /// A PING arrived; true when it is one too many (send `sendTooManyPings`'s GOAWAY and close).
  mutating func receivedPing(at now: NIODeadline) -> Bool {
    let sent = self.sentSinceLastPing
    self.sentSinceLastPing = false
    return self.pingPolicy.receivedPing(at: now, openStreams: self.openStreams, sentSinceLastPing: sent)
  }

  // MARK: - Shutdown and timers

  /// A graceful shutdown (SIGTERM, or the age limit with `grace`): GOAWAY now with the highest
  /// stream ID (new streams are still accepted while it travels), the final GOAWAY after
  /// `goAwayDelay`; open streams go on, and the connection closes when none is left, or after
  /// `grace`.
  mutating func drain(grace: TimeAmount?, now: NIODeadline) -> [Action] {
    guard !self.isDraining else { return [] }
    self.isDraining = true
    var actions: [Action] = [.sendShutdownNotice, .schedule(.goAway, now + self.configuration.goAwayDelay)]
    if let grace { actions.append(.schedule(.grace, now + grace)) }
    return actions
  }

  mutating func fired(_ timer: Timer, now: NIODeadline) -> [Action] {
    switch timer {
    case .handshake:
      return self.receivedFrame ? [] : [.close]
    case .age:
      return self.drain(grace: self.configuration.maxAgeGrace, now: now)
    case .grace:
      return [.close]
    case .goAway:
      self.sentFinalGoAway = true
      return [.sendGoAway]
    case .idle:
      guard let maxIdle = self.configuration.maxIdle, !self.isDraining else { return [] }
      guard let since = self.idleSince else { return [.schedule(.idle, now + maxIdle)] }
      let idle = now - since
      return idle >= maxIdle ? self.drain(grace: nil, now: now) : [.schedule(.idle, now + (maxIdle - idle))]
    case .keepalive:
      let interval = self.configuration.keepaliveInterval
      let quiet = now - self.lastRead
      guard quiet >= interval else { return [.schedule(.keepalive, now + (interval - quiet))] }
      self.pingSentAt = now
      return [
        .sendPing, .schedule(.keepaliveTimeout, now + self.configuration.keepaliveTimeout),
        .schedule(.keepalive, now + interval),
      ]
    case .keepaliveTimeout:
      // Any bytes read after the PING show the client is there.
      guard let sentAt = self.pingSentAt, self.lastRead <= sentAt else { return [] }
      return [.close]
    }
  }
}

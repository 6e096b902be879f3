import NIOCore
import Testing

@testable import Sluice

/// The native port's connection management without sockets or timers: a test plays the event
/// loop, feeding events and firing each timer at the deadline the machine asked for.
@Suite("HTTP/2 connection management, as a value")
struct HTTP2ConnectionManagerTests {
  typealias Manager = HTTP2ConnectionManager
  static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

  static func configuration(
    maxIdle: TimeAmount? = nil,
    maxAge: TimeAmount? = nil,
    grace: TimeAmount? = nil
  ) -> Manager.Configuration {
    Manager.Configuration(
      handshakeTimeout: .seconds(10), maxIdle: maxIdle, maxAge: maxAge, maxAgeGrace: grace,
      keepaliveInterval: .seconds(60), keepaliveTimeout: .seconds(20))
  }

  /// The deadline `actions` schedule `timer` at, if they do.
  static func deadline(of timer: Manager.Timer, in actions: [Manager.Action]) -> NIODeadline? {
    for case .schedule(let scheduled, let deadline) in actions where scheduled == timer { return deadline }
    return nil
  }

  @Test("A new connection schedules its handshake, age, idle and keepalive timers")
  func startTimers() {
    let manager = Manager(
      configuration: Self.configuration(maxIdle: .seconds(30), maxAge: .seconds(600)), now: Self.start)
    let actions = manager.start(now: Self.start)
    #expect(Self.deadline(of: .handshake, in: actions) == Self.start + .seconds(10))
    #expect(Self.deadline(of: .age, in: actions) == Self.start + .seconds(600))
    #expect(Self.deadline(of: .idle, in: actions) == Self.start + .seconds(30))
    #expect(Self.deadline(of: .keepalive, in: actions) == Self.start + .seconds(60))
    let plain = Manager(configuration: Self.configuration(), now: Self.start).start(now: Self.start)
    #expect(Self.deadline(of: .age, in: plain) == nil)
    #expect(Self.deadline(of: .idle, in: plain) == nil)
  }

  @Test("A client that sends no frame before the handshake timeout is closed; one that did is kept")
  func handshake() {
    var silent = Manager(configuration: Self.configuration(), now: Self.start)
    silent.read(at: Self.start + .seconds(1), frames: false)  // half a preface
    let silentActions = silent.fired(.handshake, now: Self.start + .seconds(10))
    #expect(silentActions == [.close])
    var speaking = Manager(configuration: Self.configuration(), now: Self.start)
    speaking.read(at: Self.start + .seconds(1), frames: true)
    let speakingActions = speaking.fired(.handshake, now: Self.start + .seconds(10))
    #expect(speakingActions == [])
  }

  @Test("Idle: drained after max-idle with no stream; an open stream moves the check on")
  func idle() {
    var manager = Manager(configuration: Self.configuration(maxIdle: .seconds(30)), now: Self.start)
    manager.streamOpened()
    // A stream is open at the first check: look again a whole max-idle later.
    var actions = manager.fired(.idle, now: Self.start + .seconds(30))
    #expect(actions == [.schedule(.idle, Self.start + .seconds(60))])
    manager.streamClosed(at: Self.start + .seconds(50))
    // Idle for 10 s only: the check moves to when it could be 30.
    actions = manager.fired(.idle, now: Self.start + .seconds(60))
    #expect(actions == [.schedule(.idle, Self.start + .seconds(80))])
    actions = manager.fired(.idle, now: Self.start + .seconds(80))
    #expect(actions == [.sendShutdownNotice, .schedule(.goAway, Self.start + .seconds(81))])
    #expect(manager.isDraining)
    // Draining already: no second shutdown.
    let again = manager.fired(.idle, now: Self.start + .seconds(200))
    #expect(again == [])
  }

  @Test("Two-phase GOAWAY: the notice, the final GOAWAY a second later, once only")
  func twoPhaseGoAway() {
    var manager = Manager(configuration: Self.configuration(), now: Self.start)
    let actions = manager.drain(grace: nil, now: Self.start)
    #expect(actions == [.sendShutdownNotice, .schedule(.goAway, Self.start + .seconds(1))])
    let secondDrain = manager.drain(grace: .seconds(5), now: Self.start)
    #expect(secondDrain == [])
    #expect(!manager.sentFinalGoAway)
    let finalGoAway = manager.fired(.goAway, now: Self.start + .seconds(1))
    #expect(finalGoAway == [.sendGoAway])
    #expect(manager.sentFinalGoAway)
  }

  @Test("Age: drained at max-age, closed after the grace even with streams open")
  func ageAndGrace() {
    var manager = Manager(configuration: Self.configuration(maxAge: .seconds(600), grace: .seconds(5)), now: Self.start)
    manager.streamOpened()
    let actions = manager.fired(.age, now: Self.start + .seconds(600))
    #expect(actions.first == .sendShutdownNotice)
    #expect(Self.deadline(of: .grace, in: actions) == Self.start + .seconds(605))
    let atGrace = manager.fired(.grace, now: Self.start + .seconds(605))
    #expect(atGrace == [.close])
  }

  @Test("Keepalive: a PING after a quiet interval, closed only if nothing is read after it")
  func keepalive() {
    var manager = Manager(configuration: Self.configuration(), now: Self.start)
    // Read 40 s in: at 60 s the connection has been quiet only 20 s.
    manager.read(at: Self.start + .seconds(40), frames: true)
    let early = manager.fired(.keepalive, now: Self.start + .seconds(60))
    #expect(early == [.schedule(.keepalive, Self.start + .seconds(100))])
    let ping = manager.fired(.keepalive, now: Self.start + .seconds(100))
    #expect(ping.first == .sendPing)
    #expect(Self.deadline(of: .keepaliveTimeout, in: ping) == Self.start + .seconds(120))
    #expect(Self.deadline(of: .keepalive, in: ping) == Self.start + .seconds(160))
    // The answer (any bytes) came: the timeout does nothing.
    var answered = manager
    answered.read(at: Self.start + .seconds(101), frames: true)
    let afterAnswer = answered.fired(.keepaliveTimeout, now: Self.start + .seconds(120))
    #expect(afterAnswer == [])
    // No bytes at all: closed.
    let unanswered = manager.fired(.keepaliveTimeout, now: Self.start + .seconds(120))
    #expect(unanswered == [.close])
  }

  @Test("The PING policy counts open streams and what the connection sent")
  func pingPolicy() {
    var manager = Manager(configuration: Self.configuration(), now: Self.start)
    manager.streamOpened()
    // PINGs that follow response frames are never struck.
    for second in 0..<50 {
      manager.sentFrames()
      let struck = manager.receivedPing(at: Self.start + .seconds(Int64(second)))
      #expect(!struck)
    }
    // PINGs a second apart with nothing sent (the clock set by the last forgiven one): two
    // strikes, then out.
    let verdicts = (50..<53).map { manager.receivedPing(at: Self.start + .seconds(Int64($0))) }
    #expect(verdicts == [false, false, true])
  }
}

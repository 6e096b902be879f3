import GRPCCore
import SluiceCodec
import Testing

@testable import Sluice

/// The WebSocket session protocol as values: events in, actions out, no sockets.
@Suite("WebSocket session state machine")
struct WebSocketSessionStateMachineTests {
  typealias Machine = WebSocketSessionStateMachine
  typealias Control = WebSocketSessionStateMachine.ControlFrame

  static let route = "/proto.StreamService/Route"
  static let sayHi = "/hello.UserService/SayHi"

  func bidi() -> Machine { Machine(path: Self.route, takesOneRequest: false) }
  func unary() -> Machine { Machine(path: Self.sayHi, takesOneRequest: true) }

  static func ending(
    _ error: RPCError?,
    close: Int,
    stops: Bool = false,
    now: Bool = false
  ) -> Machine.Action {
    .end(Machine.Ending(error: error, closeCode: close, stopsHandler: stops, closesNow: now))
  }

  @Test("The first message starts the RPC; later ones are delivered; $end half-closes; the status ends it")
  func bidiHappyPath() {
    var machine = self.bidi()
    #expect(machine.receivedMessage([1]) == .run(start: true, message: [1], end: false))
    #expect(machine.receivedMessage([2]) == .run(start: false, message: [2], end: false))
    #expect(machine.receivedControl(Control(end: true)) == .run(start: false, message: nil, end: true))
    #expect(machine.rpcFinished(nil) == Self.ending(nil, close: 1000))
    #expect(machine.state == .closing)
    #expect(machine.receivedClose() == .close(stopsHandler: false))
    #expect(machine.state == .closed)
  }

  @Test("A unary method's one message is also its half-close; a second one is INVALID_ARGUMENT")
  func unarySecondMessage() {
    var machine = self.unary()
    #expect(machine.receivedMessage([1]) == .run(start: true, message: [1], end: true))
    guard case .end(let ending) = machine.receivedMessage([2]) else {
      Issue.record("a second message did not end the session")
      return
    }
    #expect(ending.error?.code == .invalidArgument)
    #expect(ending.error?.message.contains("more than one request message") == true)
    #expect(ending.closeCode == 4003)
    #expect(ending.stopsHandler)
    // The handler's own status, arriving after, changes nothing: `$end` went out once.
    #expect(machine.rpcFinished(nil) == .none)
  }

  @Test("$end before a unary method's message ends the session without starting the RPC")
  func unaryEndFirst() {
    var machine = self.unary()
    guard case .end(let ending) = machine.receivedControl(Control(end: true)) else {
      Issue.record("no $end")
      return
    }
    #expect(ending.error?.message == "the call ended without its request message")
    #expect(!ending.stopsHandler)
  }

  @Test("A message after $end is INVALID_ARGUMENT (lost-$end bug: the status still goes out once)")
  func messageAfterEnd() {
    var machine = self.bidi()
    _ = machine.receivedMessage([1])
    _ = machine.receivedControl(Control(end: true))
    guard case .end(let ending) = machine.receivedMessage([2]) else {
      Issue.record("no $end")
      return
    }
    #expect(ending.error?.message == "a message after $end: the client had already half-closed")
    #expect(machine.receivedMessage([3]) == .none)
    #expect(machine.rpcFinished(nil) == .none)
  }

  @Test("$metadata and $timeoutMs only in the first frame, which starts the RPC")
  func metadataFirstOnly() {
    var machine = self.bidi()
    #expect(machine.receivedControl(Control(metadata: ["k": "v"])) == .run(start: true, message: nil, end: false))
    guard case .end(let ending) = machine.receivedControl(Control(timeout: .seconds(1))) else {
      Issue.record("no $end")
      return
    }
    #expect(ending.error?.message == "$timeoutMs is only allowed in the first frame")
  }

  @Test("The client's Close while the RPC runs is a half-close; TCP closes as soon as `$end` is out")
  func closeAsHalfClose() {
    var machine = self.bidi()
    _ = machine.receivedMessage([1])
    #expect(machine.receivedClose() == .run(start: false, message: nil, end: true))
    #expect(machine.rpcFinished(nil) == Self.ending(nil, close: 1000, now: true))
    #expect(machine.state == .closed)
  }

  @Test("A Close before any frame starts a streaming RPC with no messages")
  func closeFirst() {
    var machine = self.bidi()
    #expect(machine.receivedClose() == .run(start: true, message: nil, end: true))
    #expect(machine.rpcFinished(nil) == Self.ending(nil, close: 1000, now: true))
  }

  @Test("$cancel stops the handler and ends with CANCELLED, Close 4001")
  func cancel() {
    var machine = self.bidi()
    _ = machine.receivedMessage([1])
    let cancelled = Self.ending(Machine.cancelledByClient, close: 4001, stops: true)
    #expect(machine.receivedControl(Control(cancel: true)) == cancelled)
  }

  @Test("Frames after the end are ignored (resets-after-Close bug); the handshake timeout closes")
  func framesAfterEnd() {
    var machine = self.bidi()
    _ = machine.receivedMessage([1])
    _ = machine.rpcFinished(RPCError(code: .notFound, message: "no"))
    #expect(machine.receivedMessage([2]) == .none)
    #expect(machine.receivedControl(Control(end: true)) == .none)
    #expect(machine.receivedInvalid(RPCError(code: .invalidArgument, message: "x")) == .none)
    #expect(machine.closeTimedOut() == .close(stopsHandler: false))
    #expect(machine.closeTimedOut() == .none)
  }

  @Test("A client that vanishes stops the handler with no frames; after the end it just closes")
  func clientGone() {
    var running = self.bidi()
    _ = running.receivedMessage([1])
    #expect(running.clientGone() == .close(stopsHandler: true))
    #expect(running.rpcFinished(nil) == .none)

    var ended = self.bidi()
    _ = ended.receivedMessage([1])
    _ = ended.rpcFinished(nil)
    #expect(ended.clientGone() == .close(stopsHandler: false))
  }

  @Test("A shutdown ends a running RPC with UNAVAILABLE and Close 1001; an idle session too")
  func shutdown() {
    var running = self.bidi()
    _ = running.receivedMessage([1])
    #expect(running.shuttingDown() == Self.ending(GRPCErrors.shuttingDown, close: 1001, stops: true))
    #expect(running.shuttingDown() == .none)

    var idle = self.bidi()
    #expect(idle.shuttingDown() == Self.ending(GRPCErrors.shuttingDown, close: 1001, stops: false))
  }

  @Test("A deadline or an untranslatable response fails a running RPC only")
  func rpcFailed() {
    var machine = self.bidi()
    #expect(machine.rpcFailed(GRPCErrors.deadlineExceeded) == .none)  // not started yet
    _ = machine.receivedMessage([1])
    let expired = Self.ending(GRPCErrors.deadlineExceeded, close: 4004, stops: true)
    #expect(machine.rpcFailed(GRPCErrors.deadlineExceeded) == expired)
  }

  @Test("A refused start (no credentials, over the limit) ends with its status, and nothing to stop")
  func refusedStart() {
    var machine = self.bidi()
    #expect(machine.receivedMessage([1]) == .run(start: true, message: [1], end: false))
    // The engine refused: the handler was never made, so nothing to stop.
    let refused = Self.ending(GRPCErrors.missingCredentials, close: 4016)
    #expect(machine.rpcFinished(GRPCErrors.missingCredentials) == refused)
  }

  @Test("Control frames: every key read, $ping values returned for the pongs, unknown keys refused")
  func controlParsing() throws {
    let parsed = try Control.parse(
      [
        "$metadata": .object(["a": .string("1")]), "$timeoutMs": .number("250"), "$ping": .number("7"),
        "$end": .bool(true),
      ],
      maxMetadataBytes: 100
    )
    #expect(parsed.frame.metadata?[stringValues: "a"].map { $0 } == ["1"])
    #expect(parsed.frame.timeout == .milliseconds(250))
    #expect(parsed.frame.end)
    #expect(parsed.pings == [.number("7")])

    #expect(throws: RPCError.self) { try Control.parse(["$nope": .bool(true)], maxMetadataBytes: 100) }
    #expect(throws: RPCError.self) {
      try Control.parse(["$end": .bool(true), "pt": .object([:])], maxMetadataBytes: 100)
    }
    #expect(throws: RPCError.self) {
      let long = JSONValue.string(String(repeating: "v", count: 200))
      return try Control.parse(["$metadata": .object(["k": long])], maxMetadataBytes: 100)
    }
  }
}

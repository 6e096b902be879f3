import GRPCCore
import NIOHTTP1
import Testing

@testable import Sluice

/// The HTTP JSON response protocol as values: messages and ends in, what to write out.
@Suite("HTTP call state machine")
struct HTTPCallStateMachineTests {
  typealias Machine = HTTPCallStateMachine

  @Test("A unary response is held until the status says OK, then written whole")
  func unaryHeld() {
    var machine = Machine(framing: .json)
    #expect(machine.message([1]) == .hold)
    #expect(!machine.headSent)
    #expect(machine.finished(nil) == .writeSingle([1]))
    #expect(machine.finished(nil) == .none)
  }

  @Test("A unary call that fails after its message still gets an HTTP error status, not the message")
  func unaryFailsAfterMessage() {
    var machine = Machine(framing: .json)
    _ = machine.message([1])
    let error = RPCError(code: .notFound, message: "gone")
    #expect(machine.finished(error) == .writeError(error, .notFound))
  }

  @Test("A second response to a single-response method is INTERNAL")
  func secondResponse() {
    var machine = Machine(framing: .json)
    _ = machine.message([1])
    guard case .fail(let error) = machine.message([2]) else {
      Issue.record("a second response was accepted")
      return
    }
    #expect(error.code == .internalError)
  }

  @Test("A unary call that ends OK without a response is INTERNAL, 500")
  func noResponse() {
    var machine = Machine(framing: .json)
    guard case .writeError(let error, let status) = machine.finished(nil) else {
      Issue.record("no error")
      return
    }
    #expect(error.message == "the service ended the call without a response")
    #expect(status == .internalServerError)
  }

  @Test("A stream writes the status line with its first message; errors after it are $end lines")
  func streamErrorAfterMessages() {
    var machine = Machine(framing: .ndjson)
    #expect(machine.message([1]) == .writeHeadAndLine)
    #expect(machine.headSent)
    #expect(machine.message([2]) == .writeLine)
    #expect(machine.finished(RPCError(code: .unavailable, message: "x")) == .writeEndLine)
    #expect(machine.message([3]) == .drop)
  }

  @Test("A stream that fails before any message gets the mapped HTTP status (or the one asked for)")
  func streamErrorFirst() {
    var mapped = Machine(framing: .eventStream)
    let error = RPCError(code: .unauthenticated, message: "no")
    #expect(mapped.finished(error) == .writeError(error, .unauthorized))

    var tooLarge = Machine(framing: .ndjson)
    let big = RPCError(code: .resourceExhausted, message: "request too large: …")
    #expect(tooLarge.finished(big, errorStatus: .payloadTooLarge) == .writeError(big, .payloadTooLarge))
  }

  @Test("A stream that ends OK with no message: the status line, then the $end line")
  func emptyStream() {
    var machine = Machine(framing: .ndjson)
    #expect(machine.finished(nil) == .writeHeadAndEndLine)
  }
}

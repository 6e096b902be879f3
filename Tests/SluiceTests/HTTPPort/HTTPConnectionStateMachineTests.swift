import NIOCore
import NIOHTTP1
import Testing

@testable import Sluice

/// The HTTP/1.1 connection's request/response cycle as values: parts and ends in, what the
/// handler does out.
@Suite("HTTP connection state machine")
struct HTTPConnectionStateMachineTests {
  typealias Machine = HTTPConnectionStateMachine

  static let head = HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/x"))
  static func body(_ count: Int) -> HTTPServerRequestPart {
    .body(ByteBuffer(repeating: 0x61, count: count))
  }

  @Test("Keep-alive: request, response, then the next request; idle in between")
  func keepAlive() {
    var machine = Machine(skipLimit: 100)
    #expect(machine.isIdle)
    #expect(machine.read(Self.head) == .handle)
    #expect(machine.receivedHead(keepAlive: true) == .dispatch)
    #expect(!machine.isIdle)
    #expect(machine.receivedBody(bytes: 10) == .deliver)
    #expect(machine.receivedEnd() == .deliver)
    #expect(!machine.closesAfterResponse)
    #expect(machine.responseDidEnd(keepAlive: true) == .nextRequest)
    let goesOn = machine.beginNextRequest()
    #expect(goesOn)
    #expect(machine.isIdle)
    #expect(machine.receivedHead(keepAlive: true) == .dispatch)
  }

  @Test("Connection: close, or a response that ends the connection, closes after the response")
  func close() {
    var requestSaysClose = Machine(skipLimit: 100)
    _ = requestSaysClose.receivedHead(keepAlive: false)
    #expect(requestSaysClose.closesAfterResponse)
    _ = requestSaysClose.receivedEnd()
    #expect(requestSaysClose.responseDidEnd(keepAlive: true) == .closeAfterResponse)
    #expect(requestSaysClose.closing)
    #expect(requestSaysClose.receivedHead(keepAlive: true) == .ignore)

    var responseSaysClose = Machine(skipLimit: 100)
    _ = responseSaysClose.receivedHead(keepAlive: true)
    _ = responseSaysClose.receivedEnd()
    #expect(responseSaysClose.responseDidEnd(keepAlive: false) == .closeAfterResponse)
    #expect(responseSaysClose.responseDidEnd(keepAlive: true) == .none)
  }

  @Test("A pipelined request waits in the queue, reading stops, and it replays after the response")
  func pipelining() {
    var machine = Machine(skipLimit: 100)
    _ = machine.receivedHead(keepAlive: true)
    _ = machine.receivedEnd()
    // The response is still being written: the next request's parts are queued.
    #expect(machine.read(Self.head) == .queued)
    #expect(machine.read(Self.body(3)) == .queued)
    #expect(machine.read(.end(nil)) == .queued)
    #expect(!machine.mayRead)
    #expect(machine.nextQueuedPart() == nil)  // not while the response is pending
    #expect(machine.responseDidEnd(keepAlive: true) == .nextRequest)
    let goesOn = machine.beginNextRequest()
    #expect(goesOn)
    guard case .head = machine.nextQueuedPart() else {
      Issue.record("the queued head did not come back first")
      return
    }
    #expect(machine.receivedHead(keepAlive: true) == .dispatch)
    guard case .body(let chunk) = machine.nextQueuedPart() else {
      Issue.record("the queued body did not come back")
      return
    }
    #expect(chunk.readableBytes == 3)
    #expect(machine.receivedBody(bytes: 3) == .deliver)
    guard case .end = machine.nextQueuedPart() else {
      Issue.record("the queued end did not come back")
      return
    }
    #expect(machine.receivedEnd() == .deliver)
    // This request's response is pending now: nothing more is replayed, and reading resumes.
    #expect(machine.nextQueuedPart() == nil)
    #expect(machine.mayRead)
  }

  @Test("An early answer skips the rest of the request, then goes on; past the limit it closes")
  func earlyAnswer() {
    var machine = Machine(skipLimit: 100)
    _ = machine.receivedHead(keepAlive: true)
    #expect(machine.responseDidEnd(keepAlive: true) == .skipRest)
    #expect(machine.receivedBody(bytes: 60) == .skip)
    #expect(machine.read(.end(nil)) == .handle)  // the same request: not queued
    #expect(machine.receivedEnd() == .nextRequest)

    var flood = Machine(skipLimit: 100)
    _ = flood.receivedHead(keepAlive: true)
    _ = flood.responseDidEnd(keepAlive: true)
    #expect(flood.receivedBody(bytes: 60) == .skip)
    #expect(flood.receivedBody(bytes: 60) == .closeAfterResponse)
    #expect(flood.closing)
  }

  @Test("Skipped bytes saturate rather than overflow")
  func skipSaturates() {
    var machine = Machine(skipLimit: .max)
    _ = machine.receivedHead(keepAlive: true)
    _ = machine.responseDidEnd(keepAlive: true)
    #expect(machine.receivedBody(bytes: .max - 1) == .skip)
    #expect(machine.receivedBody(bytes: .max - 1) == .skip)  // .max is not over .max
  }

  @Test("A shutdown closes an idle connection at once, a busy one after its response")
  func quiesce() {
    var idle = Machine(skipLimit: 100)
    #expect(idle.quiesce() == .close)
    #expect(idle.closing)

    var busy = Machine(skipLimit: 100)
    _ = busy.receivedHead(keepAlive: true)
    #expect(busy.quiesce() == .finishRequest)
    #expect(busy.closesAfterResponse)
    _ = busy.receivedEnd()
    #expect(busy.responseDidEnd(keepAlive: true) == .closeAfterResponse)

    var queued = Machine(skipLimit: 100)
    _ = queued.receivedHead(keepAlive: true)
    _ = queued.receivedEnd()
    _ = queued.read(Self.head)
    #expect(queued.responseDidEnd(keepAlive: true) == .nextRequest)
    #expect(queued.quiesce() == .finishRequest)  // a queued request is there, not served
    let goesOn = queued.beginNextRequest()
    #expect(!goesOn)
    #expect(queued.nextQueuedPart() == nil)

    var startedQuiescing = Machine(skipLimit: 100, quiescing: true)
    _ = startedQuiescing.receivedHead(keepAlive: true)
    #expect(startedQuiescing.closesAfterResponse)
  }

  @Test("A malformed request fails the call in progress, or was answered by the error handler")
  func malformed() {
    var inCall = Machine(skipLimit: 100)
    _ = inCall.receivedHead(keepAlive: true)
    #expect(inCall.receivedMalformedRequest(callInProgress: true) == .failRequestInProgress)
    #expect(inCall.closesAfterResponse)
    #expect(inCall.responseDidEnd(keepAlive: true) == .skipRest)

    var betweenRequests = Machine(skipLimit: 100)
    #expect(betweenRequests.receivedMalformedRequest(callInProgress: false) == .answeredElsewhere)
    #expect(betweenRequests.closing)
    #expect(betweenRequests.responseDidEnd(keepAlive: true) == .none)
  }

  @Test("A connection that goes away drops what was queued")
  func reset() {
    var machine = Machine(skipLimit: 100)
    _ = machine.receivedHead(keepAlive: true)
    _ = machine.receivedEnd()
    _ = machine.read(Self.head)
    #expect(!machine.mayRead)
    machine.reset()
    #expect(machine.mayRead)
  }
}

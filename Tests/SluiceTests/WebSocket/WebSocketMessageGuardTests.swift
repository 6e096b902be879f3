import GRPCCore
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import Sluice

/// `WebSocketMessageGuard` on an embedded channel: bytes in front of NIO's real frame decoder,
/// virtual time for `--body-timeout`.
@Suite("WebSocket message guard")
struct WebSocketMessageGuardTests {
  /// Records the errors that reach the end of the pipeline (the session's side).
  final class Errors: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    var caught: [RPCError] = []
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
      if let error = error as? RPCError { self.caught.append(error) }
    }
  }

  func makeChannel(budget: RequestByteBudget = .init(limit: 1 << 20)) throws -> (EmbeddedChannel, Errors) {
    let channel = EmbeddedChannel()
    let messageGuard = WebSocketMessageGuard(bodyTimeout: .seconds(5), budget: budget)
    let errors = Errors()
    try channel.pipeline.syncOperations.addHandler(messageGuard.bytes)
    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WebSocketFrameDecoder()))
    try channel.pipeline.syncOperations.addHandler(messageGuard.frames)
    try channel.pipeline.syncOperations.addHandler(errors)
    return (channel, errors)
  }

  /// A masked client frame's bytes (opcode: 0 continuation, 1 text, 9 ping).
  func frame(_ text: String, fin: Bool = true, opcode: UInt8 = 0x1) -> ByteBuffer {
    var payload = ByteBuffer(string: text)
    let key: WebSocketMaskingKey = [1, 2, 3, 4]
    payload.webSocketMask(key)
    var bytes = ByteBuffer()
    bytes.writeInteger(UInt8(fin ? 0x80 : 0) | opcode)
    bytes.writeInteger(UInt8(0x80 | text.utf8.count))  // short payloads only
    bytes.writeBytes(key)
    bytes.writeBuffer(&payload)
    return bytes
  }

  @Test("Whole messages, however many, never time out")
  func wholeMessages() throws {
    let (channel, errors) = try self.makeChannel()
    for n in 0..<20 {
      try channel.writeInbound(self.frame("{\"n\":\(n)}"))
      channel.embeddedEventLoop.advanceTime(by: .seconds(1))
    }
    channel.embeddedEventLoop.advanceTime(by: .seconds(60))
    #expect(errors.caught.isEmpty)
  }

  @Test("A frame whose last bytes never come ends with DEADLINE_EXCEEDED after the timeout")
  func trickledFrame() throws {
    let (channel, errors) = try self.makeChannel()
    var bytes = self.frame("{\"pt\":{}}")
    try channel.writeInbound(bytes.readSlice(length: 5)!)
    channel.embeddedEventLoop.advanceTime(by: .seconds(4))
    #expect(errors.caught.isEmpty)
    try channel.writeInbound(bytes.readSlice(length: 1)!)  // progress does not reset the deadline
    channel.embeddedEventLoop.advanceTime(by: .seconds(1))
    #expect(errors.caught.map(\.code) == [.deadlineExceeded])
  }

  @Test("A fragmented message without its final fragment times out; pings between do not help")
  func unfinishedFragments() throws {
    let (channel, errors) = try self.makeChannel()
    try channel.writeInbound(self.frame("{\"pt\"", fin: false))
    channel.embeddedEventLoop.advanceTime(by: .seconds(3))
    try channel.writeInbound(self.frame("", opcode: 0x9))
    channel.embeddedEventLoop.advanceTime(by: .seconds(2))
    #expect(errors.caught.map(\.code) == [.deadlineExceeded])
  }

  @Test("A message that completes in time clears its deadline; the next one gets its own")
  func deadlineMovesOn() throws {
    let (channel, errors) = try self.makeChannel()
    try channel.writeInbound(self.frame("{\"a\"", fin: false))
    channel.embeddedEventLoop.advanceTime(by: .seconds(4))
    try channel.writeInbound(self.frame(":1}", opcode: 0x0))
    var next = self.frame("{}")
    try channel.writeInbound(next.readSlice(length: 3)!)
    channel.embeddedEventLoop.advanceTime(by: .seconds(4))
    #expect(errors.caught.isEmpty)  // 8 s in all, but 4 s for each message
    channel.embeddedEventLoop.advanceTime(by: .seconds(1))
    #expect(errors.caught.map(\.code) == [.deadlineExceeded])
  }

  @Test("Unfinished bytes past the budget end the session with RESOURCE_EXHAUSTED; closing gives them back")
  func budget() throws {
    let budget = RequestByteBudget(limit: 20)
    let (channel, errors) = try self.makeChannel(budget: budget)
    try channel.writeInbound(self.frame("{\"a\":1}"))  // 13 bytes, settled at once
    #expect(budget.bytesHeld == 0 && errors.caught.isEmpty)
    var big = self.frame("{\"pt\":{\"name\":\"x\"}}")
    try channel.writeInbound(big.readSlice(length: 12)!)
    #expect(budget.bytesHeld == 12)
    try channel.writeInbound(big.readSlice(length: 12)!)
    #expect(errors.caught.map(\.code) == [.resourceExhausted])
    _ = try channel.finish(acceptAlreadyClosed: true)
    #expect(budget.bytesHeld == 0)
  }
}

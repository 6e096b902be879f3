import GRPCCore
import NIOCore
import SluiceCodec
import Testing

@testable import Sluice

/// The multiplexed session's frames and credits as values: JSON in, frames and grants out.
@Suite("Multiplexed session frames and credits")
struct MuxFrameTests {
  static func parse(_ text: String) throws(RPCError) -> MuxFrame {
    let value: JSONValue
    do {
      value = try JSONCodec(registry: DescriptorRegistry(fileDescriptorSets: [])).parseJSON(Array(text.utf8))
    } catch {
      throw RPCError(code: .invalidArgument, message: "test JSON: \(error)")
    }
    return try MuxFrame.parse(value, maxMetadataBytes: 1024)
  }

  static func stream(_ text: String) -> (MuxStreamID, MuxFrame.Stream)? {
    guard case .stream(let id, let frame) = try? Self.parse(text) else { return nil }
    return (id, frame)
  }

  @Test("Ids are strings of at most 64 characters or integers below 2^53, echoed as sent")
  func ids() throws {
    #expect(Self.stream(#"{"id":1,"end":true}"#)?.0 == .integer(1))
    #expect(Self.stream(#"{"id":"1","end":true}"#)?.0 == .string("1"))
    #expect(Self.stream(#"{"id":9007199254740991,"end":true}"#)?.0 == .integer(9_007_199_254_740_991))
    let long = String(repeating: "é", count: 64)
    #expect(Self.stream(#"{"id":"\#(long)","end":true}"#)?.0 == .string(long))
    // 64 clusters of a letter and a combining mark are 128 scalars: too long.
    let marked = String(repeating: "e\u{301}", count: 64)
    #expect(marked.count == 64)
    for bad in ["-1", "1.5", "1e3", "9007199254740992", "null", "true", "[1]", "{}", "\"\(long)x\"", "\"\(marked)\""] {
      #expect(throws: RPCError.self, "id \(bad)") { try Self.parse(#"{"id":\#(bad),"end":true}"#) }
    }
    let allocator = ByteBufferAllocator()
    let named = MuxSessionHandler.frame(.string("a\"b"), "end", Array("{}".utf8), allocator: allocator)
    #expect(Array(named.readableBytesView) == Array(#"{"id":"a\"b","end":{}}"#.utf8))
    let numbered = MuxSessionHandler.frame(.integer(7), "credit", Array("8".utf8), allocator: allocator)
    #expect(Array(numbered.readableBytesView) == Array(#"{"id":7,"credit":8}"#.utf8))
  }

  @Test("A frame without an id is a ping only when it has nothing else; anything else is the session's error")
  func sessionErrors() throws {
    #expect(try Self.parse(#"{"ping":3}"#) == .ping(.number("3")))
    for bad in [#"{"ping":3,"x":1}"#, #"{"end":true}"#, "[]", "\"x\"", "1"] {
      #expect(throws: RPCError.self, "\(bad)") { try Self.parse(bad) }
    }
  }

  @Test("A start carries metadata, timeout, credit, a message and end")
  func start() throws {
    let frame = try #require(
      Self.stream(
        #"{"id":1,"start":"/a.B/C","metadata":{"k":["v","w"]},"timeoutMs":250,"credit":4,"message":{"x":1},"end":true}"#
      )?.1
    )
    #expect(frame.starts && frame.start == "/a.B/C" && frame.credit == 4 && frame.end && frame.problem == nil)
    #expect(frame.timeout == .milliseconds(250))
    #expect(frame.metadata?[stringValues: "k"].map { $0 } == ["v", "w"])
    #expect(frame.message == .object(["x": .number("1")]))
  }

  @Test("What is wrong with one stream frame is that stream's problem, not the session's")
  func streamProblems() throws {
    for bad in [
      #"{"id":1,"start":5}"#, #"{"id":1,"metadata":{"a":"b"}}"#, #"{"id":1,"timeoutMs":5}"#,
      #"{"id":1,"credit":-1}"#, #"{"id":1,"credit":1.5}"#, #"{"id":1,"end":false}"#, #"{"id":1,"cancel":1}"#,
      #"{"id":1,"start":"/a.B/C","metadata":{"grpc-status":"0"}}"#, #"{"id":1,"bogus":true}"#,
    ] {
      let frame = try #require(Self.stream(bad)?.1, "\(bad)")
      #expect(frame.problem?.code == .invalidArgument, "\(bad)")
    }
    #expect(Self.stream(#"{"id":1,"start":5}"#)?.1.starts == true)
    #expect(Self.stream(#"{"id":1,"credit":99999999999999999999}"#)?.1.credit == MuxFrame.maxCredit)
  }

  @Test("Response credit: unlimited without a start credit; with one, each message spends one")
  func responseCredit() {
    var unlimited = MuxCredits(responses: nil)
    unlimited.sent()
    let unlimitedResumed = unlimited.granted(5)
    #expect(unlimited.maySend && !unlimitedResumed)
    var credits = MuxCredits(responses: 1)
    #expect(credits.maySend)
    credits.sent()
    #expect(!credits.maySend)
    let resumed = credits.granted(2)
    let resumedAgain = credits.granted(1)
    #expect(resumed && !resumedAgain && credits.responses == 3)
    let capped = credits.granted(MuxFrame.maxCredit)
    #expect(!capped && credits.responses == MuxFrame.maxCredit)
  }

  @Test("Request credit: 16 to start, granted back in halves while nothing is held")
  func requestCredit() {
    var credits = MuxCredits(responses: nil)
    var taken = (0..<7).map { _ in credits.received() }
    let early = credits.grant(held: false)
    taken.append(credits.received())
    let whileHeld = credits.grant(held: true)
    let half = credits.grant(held: false)
    #expect(taken.allSatisfy { $0 } && early == nil && whileHeld == nil && half == 8)
    #expect(credits.requests == 16 && credits.owed == 0)
    let window = (0..<16).map { _ in credits.received() }
    let past = credits.received()
    let all = credits.grant(held: false)
    #expect(window.allSatisfy { $0 } && !past && all == 16)
  }
}

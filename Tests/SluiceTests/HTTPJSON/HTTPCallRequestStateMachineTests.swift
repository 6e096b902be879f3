import GRPCCore
import NIOCore
import Testing

@testable import Sluice

/// The HTTP JSON request body as values: chunks and the end in, messages, held bytes and the line
/// timer out.
@Suite("HTTP call request state machine")
struct HTTPCallRequestStateMachineTests {
  typealias Machine = HTTPCallRequestStateMachine

  static func chunk(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
  static func line(_ number: Int, _ text: String) -> Machine.Line { .init(number: number, bytes: Array(text.utf8)) }

  @Test("One JSON document: gathered across chunks, held, and handed over whole at the end")
  func single() throws {
    var machine = Machine.single(gzip: false, maxMessageBytes: 100)
    #expect(try machine.received(Self.chunk("{\"name\":")) == .init())
    #expect(machine.heldBytes == 8)
    _ = try machine.received(Self.chunk("\"x\"}"))
    #expect(machine.heldBytes == 12)
    #expect(try machine.ended() == .message(Self.chunk("{\"name\":\"x\"}")))
    #expect(machine.heldBytes == 0)
    #expect(try machine.ended() == Machine.Ended.none)
  }

  @Test("A document over the limit is refused as too large, declared or sent")
  func tooLarge() {
    var declared = Machine.single(gzip: false, maxMessageBytes: 10)
    #expect(throws: RPCError.self) { try declared.checkDeclaredLength(11) }
    #expect(declared.refusedTooLarge)

    var sent = Machine.single(gzip: false, maxMessageBytes: 10)
    #expect(throws: Never.self) { try sent.checkDeclaredLength(nil) }
    #expect(throws: Never.self) { _ = try sent.received(Self.chunk("123456")) }
    #expect(throws: RPCError.self) { _ = try sent.received(Self.chunk("12345")) }
    #expect(sent.refusedTooLarge)

    var line = Machine.ndjson(maxMessageBytes: 4)
    #expect(throws: RPCError.self) { _ = try line.received(Self.chunk("12345")) }
    #expect(line.refusedTooLarge)
  }

  @Test("An empty body is not one message")
  func empty() {
    var machine = Machine.single(gzip: false, maxMessageBytes: 10)
    #expect {
      _ = try machine.ended()
    } throws: { error in
      (error as? RPCError)?.code == .invalidArgument
    }
  }

  @Test("A gzip body is inflated at its end; garbage is refused")
  func gzip() throws {
    // "{}" gzipped (RFC 1952), by Python's gzip.compress(b"{}", mtime=0).
    let gzipped: [UInt8] = [
      0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xab, 0xae, 0x05, 0x00, 0x43, 0xbf, 0xa6,
      0xa3, 0x02, 0x00, 0x00, 0x00,
    ]
    var machine = Machine.single(gzip: true, maxMessageBytes: 100)
    _ = try machine.received(ByteBuffer(bytes: gzipped))
    #expect(try machine.ended() == .message(Self.chunk("{}")))

    var garbage = Machine.single(gzip: true, maxMessageBytes: 100)
    _ = try garbage.received(Self.chunk("not gzip"))
    #expect(throws: RPCError.self) { _ = try garbage.ended() }
  }

  @Test("NDJSON: lines as they complete, numbered, blank ones skipped; the last without newline at the end")
  func lines() throws {
    var machine = Machine.ndjson(maxMessageBytes: 100)
    let first = try machine.received(Self.chunk("{\"a\":1}\n\n  \n{\"b\""))
    #expect(first.lines == [Self.line(1, "{\"a\":1}")])
    #expect(first.startsLineTimer)  // `{"b"` is unfinished
    #expect(!first.cancelsLineTimer)
    #expect(machine.heldBytes == 4)

    let second = try machine.received(Self.chunk(":2}\r\n{\"c\":3}"))
    #expect(second.lines == [Self.line(4, "{\"b\":2}\r")])
    #expect(second.cancelsLineTimer)  // a line completed: its timer stops
    #expect(second.startsLineTimer)  // and `{"c":3}` starts a new one
    #expect(machine.heldBytes == 7)

    #expect(try machine.ended() == .halfClose(Self.line(5, "{\"c\":3}")))
    #expect(machine.heldBytes == 0)
  }

  @Test("NDJSON: one line in many chunks keeps its one timer; a body ending in a newline has no last line")
  func lineTimer() throws {
    var machine = Machine.ndjson(maxMessageBytes: 100)
    #expect(try machine.received(Self.chunk("{")).startsLineTimer)
    let more = try machine.received(Self.chunk("\"a\""))
    #expect(!more.startsLineTimer && !more.cancelsLineTimer)
    let done = try machine.received(Self.chunk(":1}\n"))
    #expect(done.cancelsLineTimer && !done.startsLineTimer)
    #expect(done.lines == [Self.line(1, "{\"a\":1}")])
    #expect(try machine.ended() == .halfClose(nil))
  }

  @Test("A GET's message comes from its query; its body is ignored")
  func query() throws {
    var machine = Machine(body: .query([1, 2]), maxMessageBytes: 10)
    #expect(try machine.received(Self.chunk("ignored")) == .init())
    #expect(machine.heldBytes == 0)
    #expect(try machine.ended() == .queryMessage([1, 2]))
  }

  @Test("A stopped call holds nothing and reads nothing more")
  func stop() throws {
    var machine = Machine.ndjson(maxMessageBytes: 100)
    _ = try machine.received(Self.chunk("{\"a\""))
    machine.stop()
    #expect(machine.heldBytes == 0)
    #expect(try machine.received(Self.chunk(":1}\n")) == .init())
    #expect(try machine.ended() == Machine.Ended.none)
  }
}

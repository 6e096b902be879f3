internal import GRPCCore
internal import NIOCore

/// The request side of one HTTP JSON call (PROTOCOL.md, "HTTP JSON"), as a value: body chunks and
/// the body's end in; the request messages, the bytes held and the line timer out. `HTTPCall`
/// feeds it on the connection's event loop (and parses, reserves the request budget and runs the
/// timer as it says); tests drive it without sockets. `HTTPCallStateMachine` is the response side.
///
/// A request body is one of:
/// - a GET's `?request=` (already a message): the body is ignored;
/// - one JSON document (unary and server-streaming methods), gathered up to
///   `--max-message-bytes` and inflated at its end when it came with `Content-Encoding: gzip`;
/// - NDJSON (client-streaming and bidi methods): each complete line is a message as it arrives,
///   blank lines are skipped (and counted, so errors name the line a client sees), an unfinished
///   line is held to `--max-message-bytes` and to `--body-timeout` from its first byte.
struct HTTPCallRequestStateMachine {
  enum Body {
    /// A GET's request, from its query.
    case query([UInt8])
    /// One JSON document so far.
    case single(ByteBuffer, gzip: Bool)
    /// NDJSON lines.
    case lines(NDJSONLines)
    /// The body ended (or the call stopped reading it).
    case ended
  }

  /// A request line: its number in the body (from 1) and its bytes.
  struct Line: Equatable {
    var number: Int
    var bytes: [UInt8]
  }

  /// What a chunk of body produced.
  struct Received: Equatable {
    /// The lines it completed, blank ones left out.
    var lines: [Line] = []
    /// Whether the timer of an unfinished line stops (the line completed, or none is pending).
    var cancelsLineTimer = false
    /// Whether a new unfinished line begins: its `--body-timeout` starts (after `lines` are handed
    /// over).
    var startsLineTimer = false
  }

  /// How the body ended.
  enum Ended: Equatable {
    /// The one request message is in: the call starts with it, half-closed.
    case message(ByteBuffer)
    /// The GET's message: the call starts with it, half-closed.
    case queryMessage([UInt8])
    /// NDJSON: the last line (one without a newline, if any), then the half-close.
    case halfClose(Line?)
    /// Nothing: the body had already ended.
    case none
  }

  let maxMessageBytes: Int
  private(set) var body: Body
  /// The bytes of unfinished request messages held: `HTTPCall` holds as much of the request
  /// budget (`--max-buffered-request-bytes`).
  private(set) var heldBytes = 0
  /// The request was refused for its size: its answer is 413.
  private(set) var refusedTooLarge = false
  private var lineNumber = 0
  private var lineTimerRunning = false

  init(body: Body, maxMessageBytes: Int) {
    self.body = body
    self.maxMessageBytes = maxMessageBytes
  }

  /// A single-message body (`gzip` when its `Content-Encoding` says so).
  static func single(gzip: Bool, maxMessageBytes: Int) -> Self {
    Self(body: .single(ByteBuffer(), gzip: gzip), maxMessageBytes: maxMessageBytes)
  }

  /// An NDJSON body.
  static func ndjson(maxMessageBytes: Int) -> Self {
    Self(body: .lines(NDJSONLines(maxLineBytes: maxMessageBytes)), maxMessageBytes: maxMessageBytes)
  }

  /// Refuses a single message whose declared `Content-Length` is over the limit, before its body.
  mutating func checkDeclaredLength(_ length: Int?) throws(RPCError) {
    guard case .single = self.body, let length, length > self.maxMessageBytes else { return }
    throw self.tooLarge("the request body")
  }

  mutating func received(_ chunk: ByteBuffer) throws(RPCError) -> Received {
    switch self.body {
    case .query, .ended:
      return Received()
    case .single(var body, let gzip):
      guard chunk.readableBytes <= self.maxMessageBytes - body.readableBytes else {
        throw self.tooLarge("the request body")
      }
      self.body = .ended  // unique while written to: no copy
      var chunk = chunk
      body.writeBuffer(&chunk)
      self.body = .single(body, gzip: gzip)
      self.heldBytes = body.readableBytes
      return Received()
    case .lines(var lines):
      let completed: [[UInt8]]
      do {
        completed = try lines.append(chunk)
      } catch {
        throw self.tooLarge("an NDJSON line")
      }
      self.body = .lines(lines)
      let pending = lines.pendingBytes
      self.heldBytes = pending
      var received = Received(lines: self.numbered(completed))
      if !completed.isEmpty || pending == 0 {
        received.cancelsLineTimer = self.lineTimerRunning
        self.lineTimerRunning = false
      }
      if pending > 0, !self.lineTimerRunning {
        received.startsLineTimer = true
        self.lineTimerRunning = true
      }
      return received
    }
  }

  /// The body ended; an empty single message is refused, and a gzip one inflated.
  mutating func ended() throws(RPCError) -> Ended {
    let body = self.body
    self.body = .ended
    self.heldBytes = 0
    self.lineTimerRunning = false
    switch body {
    case .query(let message):
      return .queryMessage(message)
    case .single(let body, let gzip):
      guard body.readableBytes > 0 else { throw GRPCErrors.expectedOneJSONMessage(got: 0) }
      return .message(gzip ? try GzipMessage.inflate(body, limit: self.maxMessageBytes) : body)
    case .lines(var lines):
      return .halfClose(lines.finish().flatMap { self.numbered([$0]).first })
    case .ended:
      return .none
    }
  }

  /// The call stopped reading (it ended): nothing more is held.
  mutating func stop() {
    self.body = .ended
    self.heldBytes = 0
    self.lineTimerRunning = false
  }

  /// Numbers lines and leaves out the blank ones (spaces, tabs, a `\r`): they separate nothing.
  private mutating func numbered(_ lines: [[UInt8]]) -> [Line] {
    var numbered: [Line] = []
    for line in lines {
      self.lineNumber += 1
      if NDJSONLines.isBlank(line) { continue }
      numbered.append(Line(number: self.lineNumber, bytes: line))
    }
    return numbered
  }

  private mutating func tooLarge(_ what: String) -> RPCError {
    self.refusedTooLarge = true
    return GRPCErrors.requestTooLarge(what, limit: self.maxMessageBytes)
  }
}

/// A multiplexed stream's flow control, both ways (PROTOCOL.md, "Multiplexed WebSocket session"),
/// as a value the stream asks:
/// - responses: without credit the stream sends as fast as the socket takes; with credit N it
///   sends N messages and waits for more;
/// - requests: the client starts with `requestWindow` messages; the server grants back what its
///   handler took, in batches of half a window, and only while the handler is not holding requests
///   back and no response waits for credit. So a client is never more than a window of messages
///   ahead of what its handler can take, and a client that sends a few never has to read a credit
///   frame.
struct MuxCredits: Equatable {
  /// Request messages a stream may send before it hears from the server.
  static let requestWindow = 16

  /// Response messages the stream may still send; nil: as many as the socket takes.
  private(set) var responses: Int?
  /// Request messages the client may still send.
  private(set) var requests = Self.requestWindow
  /// Request messages taken since the last grant: `requests + owed` is always the window.
  private(set) var owed = 0

  init(responses: Int?) {
    self.responses = responses
  }

  /// Whether one more response may go out now.
  var maySend: Bool { self.responses.map { $0 > 0 } ?? true }

  /// A response went out.
  mutating func sent() {
    if let responses = self.responses { self.responses = max(0, responses - 1) }
  }

  /// The client granted `count` more responses; true when the stream could not send and now can.
  mutating func granted(_ count: Int) -> Bool {
    guard let responses = self.responses else { return false }
    self.responses = min(MuxFrame.maxCredit, responses + count)
    return responses == 0 && count > 0
  }

  /// A request message arrived; false when it is past the client's credit.
  mutating func received() -> Bool {
    guard self.requests > 0 else { return false }
    self.requests -= 1
    self.owed += 1
    return true
  }

  /// The credit to grant the client now, if any: half a window or more taken (`held`: the
  /// handler or a waiting response holds requests back, and nothing is granted).
  mutating func grant(held: Bool) -> Int? {
    guard !held, self.owed >= Self.requestWindow / 2 else { return nil }
    let grant = self.owed
    self.requests += grant
    self.owed = 0
    return grant
  }
}

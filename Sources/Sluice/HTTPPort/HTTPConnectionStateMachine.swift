internal import NIOCore
internal import NIOHTTP1

/// The request/response cycle of one HTTP/1.1 connection, as a value: request parts, response
/// ends, a malformed request and a shutdown in; what to do with each part and whether the
/// connection goes on, skips, waits or closes out. `HTTPConnectionHandler` feeds it on the
/// connection's event loop and carries out its actions (dispatching a head, handing parts to the
/// call, timers, closing); tests drive it without sockets.
///
/// The rules (PROTOCOL.md, "HTTP JSON"; RFC 9112 §9):
/// - One request at a time. It is over when it has been read to its end and its response written.
/// - Keep-alive: the next request follows when the request, the response and the gateway (not
///   shutting down) all allow it; otherwise the connection closes once the response is written.
/// - Pipelining: parts of the next request that arrive before the current response has ended are
///   queued and replayed after it, and reading stops while any are queued.
/// - Early answers: a response that ends before its request (a refusal, an error) is followed by
///   skipping the rest of the request, up to `skipLimit` bytes (and a time the handler keeps), so
///   that a client still sending reads the answer rather than a reset connection.
///
/// Model: Hummingbird's `HTTPConnectionStateHandler` state machine.
struct HTTPConnectionStateMachine {
  /// What `read(_:)` says to do with a part that arrived.
  enum ReadAction: Equatable {
    /// Handle it now (`receivedHead`, `receivedBody`, `receivedEnd`).
    case handle
    /// It belongs to the next request and was queued; it comes back from `nextQueuedPart()`.
    case queued
  }

  /// What to do with a request head.
  enum HeadAction: Equatable {
    /// Dispatch it: it starts the connection's next request (the idle timer stops).
    case dispatch
    /// Drop it: the connection is closing, or a request is still in progress.
    case ignore
  }

  /// What to do with a chunk of request body.
  enum BodyAction: Equatable {
    /// Hand it to the request's call.
    case deliver
    /// Its response has ended: drop the chunk.
    case skip
    /// Its response has ended and the skipped bytes passed the limit: close after the response.
    case closeAfterResponse
  }

  /// What a request's end, or a response's end, leads to.
  enum EndAction: Equatable {
    /// The request's end goes to its call (its response has not ended).
    case deliver
    /// Both are over and the connection goes on: the next request (queued parts first).
    case nextRequest
    /// Both are over and the connection does not go on: close once the response is written.
    case closeAfterResponse
    /// The response ended before the request: skip the rest of the request, for at most the
    /// handler's skip time (then close after the response).
    case skipRest
    /// Nothing: the response had already ended.
    case none
  }

  /// What a malformed request (HTTP/1.1's own framing broke) means.
  enum MalformedAction: Equatable {
    /// Its response is under way: the request fails in its call (a `$end` line, or the exchange
    /// is abandoned), and the connection closes after it.
    case failRequestInProgress
    /// Nothing is under way: the protocol error handler in front answers, and closes.
    case answeredElsewhere
  }

  /// What a graceful shutdown means now.
  enum QuiesceAction: Equatable {
    /// Nothing is in progress or queued: close now.
    case close
    /// A request is in progress: tell it; the connection closes after its response.
    case finishRequest
  }

  /// The most bytes of an answered request's rest that are skipped before the connection closes.
  let skipLimit: Int

  /// Waiting for a request head (between requests).
  private(set) var awaitingHead = true
  private(set) var requestEnded = true
  private(set) var responseEnded = true
  private var keepAlive = true
  /// A graceful shutdown began: no next request.
  private(set) var quiescing: Bool
  /// The connection is closing: no part is handled any more.
  private(set) var closing = false
  private var skipped = 0
  private var queue = CircularBuffer<HTTPServerRequestPart>()

  init(skipLimit: Int, quiescing: Bool = false) {
    self.skipLimit = skipLimit
    self.quiescing = quiescing
  }

  /// Whether the response being written should say `Connection: close`.
  var closesAfterResponse: Bool { !self.keepAlive || self.quiescing }

  /// Whether the connection may read more from its socket (given that the channel is writable and
  /// the call does not hold its requests back): not while parts of the next request wait.
  var mayRead: Bool { self.queue.isEmpty }

  /// Whether the connection sits between requests with nothing in progress (the idle timer runs).
  var isIdle: Bool { self.awaitingHead && self.requestEnded && self.responseEnded }

  // MARK: - Request parts

  /// A part arrived from the socket.
  mutating func read(_ part: HTTPServerRequestPart) -> ReadAction {
    if !self.queue.isEmpty || (self.requestEnded && !self.responseEnded) {
      self.queue.append(part)  // the next request, early: after this response
      return .queued
    }
    return .handle
  }

  mutating func receivedHead(keepAlive: Bool) -> HeadAction {
    guard self.awaitingHead, !self.closing else { return .ignore }
    self.awaitingHead = false
    self.requestEnded = false
    self.responseEnded = false
    self.keepAlive = keepAlive
    self.skipped = 0
    return .dispatch
  }

  mutating func receivedBody(bytes: Int) -> BodyAction {
    guard self.responseEnded else { return .deliver }
    // Answered early: the rest is skipped, within the limit. Saturating: a client controls it.
    self.skipped = self.skipped.addingReportingOverflow(bytes).overflow ? .max : self.skipped + bytes
    if self.skipped > self.skipLimit {
      self.closing = true
      return .closeAfterResponse
    }
    return .skip
  }

  mutating func receivedEnd() -> EndAction {
    self.requestEnded = true
    guard self.responseEnded else { return .deliver }
    return self.requestOver()
  }

  // MARK: - Responses and the connection

  /// The response ended; `keepAlive` is whether its writer allows another request.
  mutating func responseDidEnd(keepAlive: Bool) -> EndAction {
    guard !self.responseEnded else { return .none }
    self.responseEnded = true
    self.keepAlive = self.keepAlive && keepAlive && !self.quiescing
    return self.requestEnded ? self.requestOver() : .skipRest
  }

  /// The request failed HTTP/1.1's framing (a parser error); `callInProgress` is whether a call
  /// or exchange serves it.
  mutating func receivedMalformedRequest(callInProgress: Bool) -> MalformedAction {
    if callInProgress, !self.responseEnded {
      self.keepAlive = false
      return .failRequestInProgress
    }
    self.responseEnded = true
    self.closing = true
    return .answeredElsewhere
  }

  /// A graceful shutdown began.
  mutating func quiesce() -> QuiesceAction {
    self.quiescing = true
    if self.awaitingHead, self.queue.isEmpty {
      self.closing = true
      return .close
    }
    return .finishRequest
  }

  /// The connection is closing (a timer, a limit or the peer): nothing more is handled.
  mutating func close() {
    self.closing = true
  }

  /// The current request is done: the connection waits for the next head. `false` when a
  /// shutdown means it closes instead.
  mutating func beginNextRequest() -> Bool {
    self.awaitingHead = true
    if self.quiescing {
      self.closing = true
      return false
    }
    return true
  }

  /// The next queued part to handle, while the connection is open and no response is pending.
  mutating func nextQueuedPart() -> HTTPServerRequestPart? {
    guard !self.closing, !(self.requestEnded && !self.responseEnded) else { return nil }
    return self.queue.popFirst()
  }

  /// The connection went away: whatever was queued is dropped.
  mutating func reset() {
    self.awaitingHead = true
    self.queue.removeAll()
  }

  private mutating func requestOver() -> EndAction {
    if self.keepAlive { return .nextRequest }
    self.closing = true
    return .closeAfterResponse
  }
}

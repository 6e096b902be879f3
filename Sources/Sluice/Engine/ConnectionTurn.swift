internal import NIOCore

/// What a connection does at the end of a turn: write out what it has and flush.
protocol TurnFlushing: AnyObject {
  func flushConnection()
}

/// Something holding output of its own to write before a turn's flush (a native stream's batched
/// DATA).
protocol TurnBatched: AnyObject {
  func writePending()
}

/// A connection's output batching, for every front end (native gRPC on either HTTP/2 layer, a
/// WebSocket session, an HTTP/1.1 connection): what is written while the connection's reads are
/// processed (`beginRead` … `endRead`) or inside an engine callback (`inCallback`) is flushed once
/// when that ends; output from a handler's own timers is flushed on the loop's next task, once
/// however much it wrote. Writers with batched output (`writeAtFlush`) write it first.
///
/// The turn holds its connection strongly from `attach` (in the connection's `handlerAdded`) to
/// `detach` (in its `handlerRemoved`), not weakly: a weak reference would give every connection
/// handler a refcount side table, which made each of the many retains and releases of a handler
/// (one per nghttp2 callback) take the runtime's slow path, about 10 % of a proxy's CPU.
final class ConnectionTurn {
  private let eventLoop: any EventLoop
  private var owner: (any TurnFlushing)?
  private var inTurn = false
  private var flushNeeded = false
  private var flushScheduled = false
  private var batching: [any TurnBatched] = []
  /// Other connections' turns to flush before this one's own output (see `flushFirst`).
  private var firsts: [ConnectionTurn] = []

  init(eventLoop: any EventLoop) {
    self.eventLoop = eventLoop
  }

  /// The connection that flushes, from its `handlerAdded`.
  func attach(_ owner: any TurnFlushing) {
    self.owner = owner
  }

  /// The connection left its pipeline (`handlerRemoved`): nothing is flushed any more, and the
  /// reference cycle between it and its turn is broken.
  func detach() {
    self.reset()
    self.owner = nil
    self.firsts.removeAll()
  }

  /// `writer` has batched output to write before the next flush.
  func writeAtFlush(_ writer: any TurnBatched) {
    self.batching.append(writer)
  }

  /// Flushes `other` (another connection's turn on this loop) as this turn's flush begins, before
  /// this connection's own output: a proxy forwards what it read on one connection to another,
  /// and the forwarded bytes are on the call's critical path while this connection's own (window
  /// updates, PING acknowledgements) are not.
  func flushFirst(_ other: ConnectionTurn) {
    guard other !== self, !self.firsts.contains(where: { $0 === other }) else { return }
    self.firsts.append(other)
    self.flushNeeded = true
  }

  /// Flushes at the end of the current turn, or on the loop's next task outside one.
  func flushSoon() {
    self.flushNeeded = true
    guard !self.inTurn, !self.flushScheduled else { return }
    self.flushScheduled = true
    self.eventLoop.assumeIsolated().execute {
      self.flushScheduled = false
      self.flushNow()
    }
  }

  /// Runs an engine callback (a deadline, a write completing) as one turn: what it writes is
  /// flushed once, when it returns.
  func inCallback(_ body: () -> Void) {
    let outer = self.inTurn
    self.inTurn = true
    body()
    self.inTurn = outer
    if !outer { self.flushNow() }
  }

  func beginRead() {
    self.inTurn = true
  }

  /// The connection's reads are done: flush (`always`: even if nothing asked to, because the
  /// HTTP/2 layer may have frames of its own to send).
  func endRead(always: Bool) {
    self.inTurn = false
    if always { self.flushNeeded = true }
    self.flushNow()
  }

  /// Flushes now (if anything asked to): the streams' batched DATA, then the connection.
  func flushNow(always: Bool = false) {
    if !self.firsts.isEmpty {
      let firsts = self.firsts
      self.firsts.removeAll(keepingCapacity: true)
      for other in firsts { other.flushNow() }
    }
    if always { self.flushNeeded = true }
    guard self.flushNeeded, let owner = self.owner else { return }
    self.flushNeeded = false
    if !self.batching.isEmpty {
      let batching = self.batching
      self.batching.removeAll(keepingCapacity: true)
      // What the writers hand over is flushed just below, not in another turn.
      let outer = self.inTurn
      self.inTurn = true
      for writer in batching { writer.writePending() }
      self.inTurn = outer
      self.flushNeeded = false
    }
    owner.flushConnection()
  }

  /// The connection is gone: nothing is written any more.
  func reset() {
    self.batching.removeAll()
  }
}

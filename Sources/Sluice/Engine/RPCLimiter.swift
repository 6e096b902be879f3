internal import Synchronization

/// `--max-concurrent-rpcs`: `RPCEngine` refuses new RPCs with `RESOURCE_EXHAUSTED` while `limit`
/// are already running, on every transport; the running ones are unaffected.
final class RPCLimiter: Sendable {
  /// How many RPCs may run at once.
  let limit: Int
  private let running = Atomic<Int>(0)

  init(limit: Int) {
    self.limit = limit
  }

  /// Takes a slot for one RPC; false (and nothing taken) when all `limit` are in use.
  func acquire() -> Bool {
    guard self.running.add(1, ordering: .relaxed).newValue <= self.limit else {
      self.running.subtract(1, ordering: .relaxed)
      return false
    }
    return true
  }

  /// Gives back a slot taken by `acquire()`.
  func release() {
    self.running.subtract(1, ordering: .relaxed)
  }
}

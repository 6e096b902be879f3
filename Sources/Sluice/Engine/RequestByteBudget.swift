internal import Synchronization

/// The gateway-wide budget of bytes held in unfinished request messages
/// (`--max-buffered-request-bytes`): HTTP bodies, NDJSON lines and WebSocket frames still
/// arriving. Each message is already bounded by `--max-message-bytes` and its arrival by
/// `--body-timeout`; the budget bounds their sum, so many slow uploads at once cannot exhaust
/// memory. A message that would go past it is refused and the others are untouched.
final class RequestByteBudget: Sendable {
  let limit: Int
  private let held = Atomic<Int>(0)

  init(limit: Int) {
    self.limit = limit
  }

  /// Bytes held now, over every connection.
  var bytesHeld: Int { self.held.load(ordering: .relaxed) }

  /// Takes `count` bytes of the budget; false (and nothing taken) when that would go past it.
  func reserve(_ count: Int) -> Bool {
    let total = self.held.add(count, ordering: .relaxed).newValue
    guard total <= self.limit else {
      self.held.subtract(count, ordering: .relaxed)
      return false
    }
    return true
  }

  /// Gives back `count` bytes taken with `reserve(_:)`.
  func release(_ count: Int) {
    if count > 0 { self.held.subtract(count, ordering: .relaxed) }
  }
}

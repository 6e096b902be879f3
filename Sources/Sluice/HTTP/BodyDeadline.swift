internal import AsyncAlgorithms
internal import NIOCore
internal import NIOHTTP1
internal import Synchronization

/// `--body-timeout` for one message of an HTTP request (a body, an NDJSON line): a timer on the
/// connection's event loop that, when it fires, ends the wait for the request's parts. The call
/// then answers 408 (or a `$end` with `DEADLINE_EXCEEDED`) and the connection closes. A timer
/// rather than a task racing the read, so that a request costs no extra task.
struct BodyDeadline: Sendable {
  private final class Flag: Sendable {
    let expired = Atomic<Bool>(false)
  }

  private let flag = Flag()
  private let task: Scheduled<Void>

  /// Starts the timer for a message of the request whose parts arrive through `parts`.
  init(in timeout: Duration, on eventLoop: any EventLoop, parts: AsyncChannel<HTTPServerRequestPart>) {
    let flag = self.flag
    self.task = eventLoop.scheduleTask(in: TimeAmount(timeout)) {
      flag.expired.store(true, ordering: .relaxed)
      parts.finish()
    }
  }

  /// Whether the timer fired (the parts stopped because of it).
  var hasExpired: Bool { self.flag.expired.load(ordering: .relaxed) }

  /// Stops the timer: the message arrived.
  func cancel() { self.task.cancel() }
}

internal import AsyncAlgorithms
internal import NIOCore
internal import NIOHTTP1
internal import Synchronization

/// `--body-timeout` for one NDJSON line of a streaming HTTP call that did not arrive whole in one
/// chunk: a timer on the connection's event loop that, when it fires, ends the wait for the
/// request's parts; the call then ends with `DEADLINE_EXCEEDED` (408 before its first answer) and
/// the connection closes. Armed only while a line is unfinished at the end of a chunk, so a stream
/// of whole lines costs no timer. (Single-message bodies are timed by `RequestBodyTimeout`.)
struct BodyDeadline: Sendable {
  private final class Flag: Sendable {
    let expired = Atomic<Bool>(false)
  }

  private let flag = Flag()
  private let task: Scheduled<Void>

  /// Starts the timer for a line of the request whose parts arrive through `parts`.
  init(in timeout: Duration, on eventLoop: any EventLoop, parts: AsyncChannel<HTTPServerRequestPart>) {
    let flag = self.flag
    self.task = eventLoop.scheduleTask(in: TimeAmount(timeout)) {
      flag.expired.store(true, ordering: .relaxed)
      parts.finish()
    }
  }

  /// Whether the timer fired (the parts stopped because of it).
  var hasExpired: Bool { self.flag.expired.load(ordering: .relaxed) }

  /// Stops the timer: the line arrived.
  func cancel() { self.task.cancel() }
}

internal import Synchronization

/// The port a listener bound, for any number of callers that wait for it; they get an error if
/// the listener failed before binding.
final class BoundPort: Sendable {
  private enum State {
    case waiting([CheckedContinuation<Int, any Error>])
    case bound(Int)
    case failed(any Error)
  }

  private let state = Mutex(State.waiting([]))

  /// Waits until the port is known.
  func value() async throws -> Int {
    try await withCheckedThrowingContinuation { continuation in
      let outcome: Result<Int, any Error>? = self.state.withLock { state in
        switch state {
        case .waiting(var waiters):
          waiters.append(continuation)
          state = .waiting(waiters)
          return nil
        case .bound(let port): return .success(port)
        case .failed(let error): return .failure(error)
        }
      }
      if let outcome { continuation.resume(with: outcome) }
    }
  }

  func resolve(_ outcome: Result<Int, any Error>) {
    let waiters: [CheckedContinuation<Int, any Error>] = self.state.withLock { state in
      guard case .waiting(let waiters) = state else { return [] }
      switch outcome {
      case .success(let port): state = .bound(port)
      case .failure(let error): state = .failed(error)
      }
      return waiters
    }
    for waiter in waiters { waiter.resume(with: outcome) }
  }
}

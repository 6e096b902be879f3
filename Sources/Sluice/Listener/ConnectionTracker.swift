internal import NIOCore
internal import NIOPosix
internal import Synchronization

/// The open connections of a port, for a graceful shutdown: `quiesce` asks each to wind down
/// (a `ChannelShouldQuiesceEvent` down its pipeline) and `drained` completes once the last has
/// closed; `closeAll` is the drain timeout's end.
final class ConnectionTracker: Sendable {
  private struct State {
    var connections: [ObjectIdentifier: any Channel] = [:]
    var quiescing = false
  }

  private let state = Mutex(State())
  private let drainedPromise = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Void.self)

  /// Records `channel` until it closes; false (and not recorded) once the port is shutting down.
  func admit(_ channel: any Channel) -> Bool {
    let id = ObjectIdentifier(channel)
    let admitted = self.state.withLock { state in
      guard !state.quiescing else { return false }
      state.connections[id] = channel
      return true
    }
    guard admitted else { return false }
    channel.closeFuture.whenComplete { _ in
      let drained = self.state.withLock { state in
        state.connections[id] = nil
        return state.quiescing && state.connections.isEmpty
      }
      if drained { self.drainedPromise.succeed() }
    }
    return true
  }

  /// Whether a graceful shutdown has begun (a connection set up after it winds down at once).
  var isQuiescing: Bool {
    self.state.withLock { $0.quiescing }
  }

  /// Asks every open connection to wind down; new ones are refused from now on.
  func quiesce() {
    let connections = self.state.withLock { state in
      state.quiescing = true
      return Array(state.connections.values)
    }
    for connection in connections {
      connection.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }
    if connections.isEmpty { self.drainedPromise.succeed() }
  }

  /// Closes every open connection now.
  func closeAll() {
    let connections = self.state.withLock { state in
      state.quiescing = true
      return Array(state.connections.values)
    }
    for connection in connections { connection.close(promise: nil) }
    if connections.isEmpty { self.drainedPromise.succeed() }
  }

  /// Returns once `quiesce` or `closeAll` has been asked and every connection has closed.
  func drained() async throws {
    try await self.drainedPromise.futureResult.get()
  }
}

public import GRPCCore
internal import Synchronization

/// Lets the JSON bridge cancel the server side of an in-process RPC.
///
/// grpc-swift 2.4's in-process transport does not tell the server when the client cancels an
/// RPC (grpc/grpc-swift-2#17): a `List` whose WebSocket client vanished would keep producing.
/// Written by hand because no library closes that gap: the bridge tags each call with an id in
/// the `sluice-rpc-id` metadata key; this interceptor (on the in-process server only) strips the
/// tag and keeps the RPC's cancellation handle, and `cancel(id:)` fires it, which
/// `CancellationPropagator` turns into cancelling the handler.
public final class InProcessCancellation: ServerInterceptor {
  static let metadataKey = "sluice-rpc-id"
  private static let maximumPending = 4096

  private struct State {
    var handles: [String: ServerContext.RPCCancellationHandle] = [:]
    /// Ids cancelled before their RPC reached the server, oldest first.
    var pending: [String] = []
  }

  private let state = Mutex(State())

  /// Creates the interceptor.
  public init() {}

  /// Cancels the server side of the RPC tagged `id`, now or as soon as it arrives.
  func cancel(id: String) {
    let handle: ServerContext.RPCCancellationHandle? = self.state.withLock { state in
      if let handle = state.handles.removeValue(forKey: id) { return handle }
      state.pending.append(id)
      if state.pending.count > Self.maximumPending { state.pending.removeFirst() }
      return nil
    }
    handle?.cancel()
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard let id = request.metadata[stringValues: Self.metadataKey].first(where: { _ in true }) else {
      return try await next(request, context)
    }
    var request = request
    request.metadata.removeAllValues(forKey: Self.metadataKey)
    let alreadyCancelled = self.state.withLock { state in
      if let index = state.pending.firstIndex(of: id) {
        state.pending.remove(at: index)
        return true
      }
      state.handles[id] = context.cancellation
      return false
    }
    if alreadyCancelled { context.cancellation.cancel() }

    var response = try await next(request, context)
    if case .success(var contents) = response.accepted {
      let producer = contents.producer
      contents.producer = { writer in
        defer { self.state.withLock { _ = $0.handles.removeValue(forKey: id) } }
        return try await producer(writer)
      }
      response.accepted = .success(contents)
    } else {
      self.state.withLock { _ = $0.handles.removeValue(forKey: id) }
    }
    return response
  }
}

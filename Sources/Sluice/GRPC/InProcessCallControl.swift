public import GRPCCore
internal import Synchronization

/// Gives the JSON bridge the control over in-process calls that grpc-swift 2.4's in-process
/// transport lacks: cancellation of the server side and backpressure on responses.
///
/// - The transport does not tell the server when the client cancels (grpc/grpc-swift-2#17): a
///   `List` whose WebSocket client vanished would keep producing.
/// - Its response stream is unbounded: a `List` of a million messages to a client that stopped
///   reading would be buffered whole in the gateway.
///
/// Written by hand because no library closes those gaps. The bridge tags each call with an id in
/// the `sluice-rpc-id` metadata key; this interceptor (on the in-process server only) strips the
/// tag, keeps the RPC's cancellation handle, and makes the handler's response writer wait for
/// credit: at most `window` messages may be ahead of what the bridge has written to its client.
/// `cancel(id:)` fires the handle (which `CancellationPropagator` turns into cancelling the
/// handler); `grant(id:)` returns one credit per message delivered.
public final class InProcessCallControl: ServerInterceptor {
  static let metadataKey = "sluice-rpc-id"
  private static let maximumPending = 4096

  private struct Call {
    var cancellation: ServerContext.RPCCancellationHandle
    var credit: CreditWindow?
  }

  private struct State {
    var calls: [String: Call] = [:]
    /// Ids cancelled before their RPC reached the server, oldest first.
    var pendingCancellations: [String] = []
  }

  private let state = Mutex(State())
  private let window: Int

  /// Creates the interceptor.
  /// - Parameter window: How many response messages a handler may write ahead of delivery.
  public init(window: Int = 32) {
    self.window = window
  }

  /// Cancels the server side of the RPC tagged `id`, now or as soon as it arrives.
  func cancel(id: String) {
    let call: Call? = self.state.withLock { state in
      if let call = state.calls.removeValue(forKey: id) { return call }
      state.pendingCancellations.append(id)
      if state.pendingCancellations.count > Self.maximumPending { state.pendingCancellations.removeFirst() }
      return nil
    }
    call?.credit?.close()
    call?.cancellation.cancel()
  }

  /// One response message of the RPC tagged `id` has been delivered to its client.
  func grant(id: String) {
    self.state.withLock { $0.calls[id]?.credit }?.grant()
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
      if let index = state.pendingCancellations.firstIndex(of: id) {
        state.pendingCancellations.remove(at: index)
        return true
      }
      state.calls[id] = Call(cancellation: context.cancellation)
      return false
    }
    if alreadyCancelled { context.cancellation.cancel() }

    let response = try await next(request, context)
    if case .failure = response.accepted {
      self.state.withLock { _ = $0.calls.removeValue(forKey: id) }
      return response
    }
    let window = self.window
    return response.wrappingProducer { writer, producer in
      let credit = CreditWindow(credits: window)
      let registered = self.state.withLock { state in
        state.calls[id]?.credit = credit
        return state.calls[id] != nil
      }
      if !registered { credit.close() }  // cancelled meanwhile
      defer {
        credit.close()
        self.state.withLock { _ = $0.calls.removeValue(forKey: id) }
      }
      return try await producer(RPCWriter(wrapping: CreditedWriter(base: writer, credit: credit)))
    }
  }
}

/// An `RPCWriter` that takes one credit before each message.
private struct CreditedWriter<Element: Sendable>: RPCWriterProtocol {
  let base: RPCWriter<Element>
  let credit: CreditWindow

  func write(_ element: Element) async throws {
    try await self.credit.take()
    try await self.base.write(element)
  }

  func write(contentsOf elements: some Sequence<Element>) async throws {
    for element in elements { try await self.write(element) }
  }
}

/// A counting semaphore for one writer: `take()` waits while no credit is left.
final class CreditWindow: Sendable {
  private struct State {
    var credits: Int
    var waiter: CheckedContinuation<Void, any Error>?
    var closed = false
  }

  private let state: Mutex<State>

  init(credits: Int) {
    self.state = Mutex(State(credits: credits))
  }

  func take() async throws {
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        let outcome: Result<Void, any Error>? = self.state.withLock { state in
          if state.closed || Task.isCancelled { return .failure(CancellationError()) }
          if state.credits > 0 {
            state.credits -= 1
            return .success(())
          }
          state.waiter = continuation
          return nil
        }
        if let outcome { continuation.resume(with: outcome) }
      }
    } onCancel: {
      self.close()
    }
  }

  func grant() {
    let waiter: CheckedContinuation<Void, any Error>? = self.state.withLock { state in
      if let waiter = state.waiter {
        state.waiter = nil
        return waiter
      }
      state.credits += 1
      return nil
    }
    waiter?.resume()
  }

  /// Fails the current and every later `take()`.
  func close() {
    let waiter = self.state.withLock { state in
      state.closed = true
      defer { state.waiter = nil }
      return state.waiter
    }
    waiter?.resume(throwing: CancellationError())
  }
}

public import GRPCCore

/// A server interceptor that cancels a handler's work when gRPC cancels its RPC.
///
/// gRPC Swift signals cancellation (the client reset the stream, the connection dropped, the
/// deadline passed) through `ServerContext.cancellation` only, not by cancelling the handler's
/// task: without this a `List` whose client went away would go on producing into a dead stream.
/// With it, ordinary structured code (`Task.sleep`, `for try await`, awaited writes) stops at once.
public struct CancellationPropagator: ServerInterceptor {
  /// Creates the interceptor.
  public init() {}

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let cancellation = context.cancellation
    return try await next(request, context).wrappingProducer { writer, producer in
      // Race the handler against the RPC's cancellation. If the RPC is cancelled first, the
      // handler is cancelled and its own outcome is reported (a handler ending on a graceful
      // shutdown says UNAVAILABLE); a plain cancellation becomes CANCELLED.
      try await withThrowingTaskGroup(of: Metadata?.self) { group in
        group.addTask { try await producer(writer) }
        group.addTask {
          try await cancellation.cancelled
          return nil
        }
        if let trailers = try await group.next()! {
          group.cancelAll()
          return trailers
        }
        group.cancelAll()
        do {
          if let trailers = try await group.next()! { return trailers }
        } catch is CancellationError {}
        throw RPCError(code: .cancelled, message: "The RPC was cancelled.")
      }
    }
  }
}

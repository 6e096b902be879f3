internal import GRPCCore
internal import Synchronization

extension StreamingServerResponse {
  /// The same response with its producer run inside `wrapper`; a rejected RPC is left as it is.
  ///
  /// Interceptors use it to act around a handler's whole run (streaming handlers run inside the
  /// producer, after `next` has returned).
  typealias Producer = @Sendable (RPCWriter<Message>) async throws -> Metadata

  func wrappingProducer(
    _ wrapper: @escaping @Sendable (RPCWriter<Message>, _ producer: @escaping Producer) async throws -> Metadata
  ) -> Self {
    guard case .success(var contents) = self.accepted else { return self }
    let producer = contents.producer
    contents.producer = { writer in try await wrapper(writer, producer) }
    var response = self
    response.accepted = .success(contents)
    return response
  }
}

extension StreamingServerResponse {
  /// Runs `next` and calls `ended` exactly once, when the RPC's handler has stopped, whichever
  /// way: `next` threw, the RPC was rejected, or the producer returned (`nil`) or threw. For
  /// interceptors that hold something from an RPC's start to its end.
  /// - Parameters:
  ///   - next: The rest of the interceptor chain and the handler.
  ///   - writer: Wraps the writer the producer writes its responses to.
  ///   - ended: Receives the error the RPC ended with, or `nil`.
  static func observingEnd(
    of next: () async throws -> Self,
    writer: @escaping @Sendable (RPCWriter<Message>) -> RPCWriter<Message> = { $0 },
    ended: @escaping @Sendable ((any Error)?) -> Void
  ) async throws -> Self {
    let response: Self
    do {
      response = try await next()
    } catch {
      ended(error)
      throw error
    }
    if case .failure(let error) = response.accepted {
      ended(error)
      return response
    }
    let end = EndOnce(ended)
    return response.wrappingProducer { base, producer in
      do {
        let trailers = try await producer(writer(base))
        end(nil)
        return trailers
      } catch {
        end(error)
        throw error
      }
    }
  }
}

/// Calls `ended` once: when told to, or, failing that, when the last reference goes. grpc-swift
/// drops an accepted response without running its producer when the stream closed before the
/// response headers could be written (a client that resets right after its request); the
/// producer closure, and this object with it, is then released unrun, and that is the RPC's end.
private final class EndOnce: Sendable {
  private let ended: @Sendable ((any Error)?) -> Void
  private let done = Atomic<Bool>(false)

  init(_ ended: @escaping @Sendable ((any Error)?) -> Void) {
    self.ended = ended
  }

  func callAsFunction(_ error: (any Error)?) {
    if !self.done.exchange(true, ordering: .acquiringAndReleasing) { self.ended(error) }
  }

  deinit {
    if !self.done.load(ordering: .acquiring) {
      self.ended(RPCError(code: .cancelled, message: "the client went away before the response began"))
    }
  }
}

internal import GRPCCore

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
    return response.wrappingProducer { base, producer in
      do {
        let trailers = try await producer(writer(base))
        ended(nil)
        return trailers
      } catch {
        ended(error)
        throw error
      }
    }
  }
}

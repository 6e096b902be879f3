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

public import GRPCCore

/// Something that can run a call with serialized messages: a `GRPCClient` over any transport.
///
/// The front ends depend on this rather than on `GRPCClient<Transport>`, so the transport (the
/// in-process one to the hosted services today, HTTP/2 to an upstream backend later) is a
/// configuration choice, not a type parameter threaded through every session.
public protocol RPCCaller: Sendable {
  /// Runs a bidirectional-streaming call; every RPC kind is one on the wire.
  func call<Result: Sendable>(
    method: GRPCCore.MethodDescriptor,
    request: StreamingClientRequest<[UInt8]>,
    options: CallOptions,
    onResponse: @Sendable @escaping (StreamingClientResponse<[UInt8]>) async throws -> Result
  ) async throws -> Result
}

extension GRPCClient: RPCCaller {
  public func call<Result: Sendable>(
    method: GRPCCore.MethodDescriptor,
    request: StreamingClientRequest<[UInt8]>,
    options: CallOptions,
    onResponse: @Sendable @escaping (StreamingClientResponse<[UInt8]>) async throws -> Result
  ) async throws -> Result {
    try await self.bidirectionalStreaming(
      request: request,
      descriptor: method,
      serializer: RawMessageSerializer(),
      deserializer: RawMessageDeserializer(),
      options: options,
      onResponse: onResponse
    )
  }
}

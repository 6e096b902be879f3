internal import GRPCCore
internal import SluiceCodec

extension JSONBridge {
  /// Runs one RPC for a JSON front end: the one place where a call is tagged, its responses are
  /// decoded to JSON and acknowledged, and an abandoned call is cancelled on the server side.
  ///
  /// - Parameters:
  ///   - method: The method to call.
  ///   - metadata: Request metadata (headers, `$metadata`).
  ///   - timeout: The deadline, if the client set one.
  ///   - transport: The front end, for metrics and logs.
  ///   - requests: Writes the request messages (protobuf wire bytes); returning is the half-close.
  ///   - onHeaders: Called once with the response's initial metadata.
  ///   - onMessage: Called with each response message as JSON text; returning means it was
  ///     delivered, so the service may produce the next one.
  /// - Returns: The trailers of a successful RPC, or its error. A cancelled caller gets
  ///   `CANCELLED`; its front end usually has nobody left to tell.
  func run(
    _ method: SluiceCodec.MethodDescriptor,
    metadata: Metadata,
    timeout: Duration?,
    transport: GatewayMetrics.Transport,
    requests: @Sendable @escaping (RPCWriter<[UInt8]>) async throws -> Void,
    onHeaders: @Sendable @escaping (Metadata) async throws -> Void,
    onMessage: @Sendable @escaping ([UInt8]) async throws -> Void
  ) async -> Result<Metadata, RPCError> {
    var metadata = metadata
    var options = CallOptions.defaults
    options.timeout = timeout
    metadata.replaceOrAddString(transport.rawValue, forKey: RPCMonitor.transportKey)
    let tag = self.tag(&metadata)
    let request = StreamingClientRequest<[UInt8]>(metadata: metadata, producer: requests)
    do {
      let trailers = try await withTaskCancellationHandler {
        try await self.caller.call(method: method.grpcDescriptor, request: request, options: options) { response in
          let contents = try response.accepted.get()
          try await onHeaders(contents.metadata)
          for try await part in contents.bodyParts {
            switch part {
            case .message(let bytes):
              try await onMessage(try self.decodeResponse(bytes, for: method))
              self.delivered(tag)
            case .trailingMetadata(let trailers):
              return trailers
            }
          }
          return Metadata()
        }
      } onCancel: {
        self.abandon(tag)
      }
      return .success(trailers)
    } catch let error as RPCError {
      return .failure(error)
    } catch {
      // Our side failed (the client's connection is gone): the service must stop too.
      self.abandon(tag)
      return .failure(RPCError(code: .cancelled, message: "the client went away before the RPC ended"))
    }
  }
}

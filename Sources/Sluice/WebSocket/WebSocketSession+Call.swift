internal import AsyncAlgorithms
internal import GRPCCore
internal import SluiceCodec

extension WebSocketSession {
  /// Runs the RPC once the first frame has arrived, streaming its responses to the socket.
  func call(
    _ method: SluiceCodec.MethodDescriptor,
    metadata: Metadata,
    timeout: Duration?,
    events: AsyncChannel<Inbound>,
    writer: WebSocketFrameWriter
  ) async -> Result<Metadata, RPCError> {
    var metadata = metadata
    var options = CallOptions.defaults
    options.timeout = timeout
    var firstMessage: [UInt8]?

    // The RPC starts on the first frame: it may carry `$metadata` that must go in the headers.
    var iterator = events.makeAsyncIterator()
    switch await iterator.next() {
    case .metadata(let extra, let extraTimeout):
      metadata.add(contentsOf: extra)
      options.timeout = extraTimeout ?? options.timeout
    case .message(let bytes):
      firstMessage = bytes
    case nil:
      if Task.isCancelled { return .failure(RPCError(code: .cancelled, message: "the session ended")) }
      if method.takesOneRequest {
        return .failure(RPCError(code: .invalidArgument, message: "\(self.path) needs one request message before $end"))
      }
    }

    let tag = self.bridge.tag(&metadata)
    let request = StreamingClientRequest<[UInt8]>(metadata: metadata) { [firstMessage] requests in
      if let firstMessage { try await requests.write(firstMessage) }
      for await event in events {
        if case .message(let bytes) = event { try await requests.write(bytes) }
      }
    }

    do {
      let trailers = try await withTaskCancellationHandler {
        try await self.call(method, request: request, options: options, writer: writer, tag: tag)
      } onCancel: {
        self.bridge.abandon(tag)
      }
      return .success(trailers)
    } catch let error as RPCError {
      return .failure(error)
    } catch {
      // Our side failed (the socket is gone): the service must stop too.
      self.bridge.abandon(tag)
      return .failure(RPCError(code: .cancelled, message: "the session ended before the RPC did"))
    }
  }

  private func call(
    _ method: SluiceCodec.MethodDescriptor,
    request: StreamingClientRequest<[UInt8]>,
    options: CallOptions,
    writer: WebSocketFrameWriter,
    tag: String?
  ) async throws -> Metadata {
    try await self.bridge.caller.call(
      method: method.grpcDescriptor,
      request: request,
      options: options
    ) { response in
      let contents = try response.accepted.get()
      if let headers = StatusJSON.headersFrame(contents.metadata) {
        try await writer.send(json: headers)
      }
      for try await part in contents.bodyParts {
        switch part {
        case .message(let bytes):
          try await writer.send(json: try self.bridge.decodeResponse(bytes, for: method))
          self.bridge.delivered(tag)
        case .trailingMetadata(let trailers):
          return trailers
        }
      }
      return Metadata()
    }
  }
}

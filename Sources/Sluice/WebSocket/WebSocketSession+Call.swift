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
    var timeout = timeout
    var firstMessage: [UInt8]?

    // The RPC starts on the first frame: it may carry `$metadata` that must go in the headers.
    var iterator = events.makeAsyncIterator()
    switch await iterator.next() {
    case .metadata(let extra, let extraTimeout):
      metadata.add(contentsOf: extra)
      timeout = extraTimeout ?? timeout
    case .message(let bytes):
      firstMessage = bytes
    case nil:
      if Task.isCancelled { return .failure(RPCError(code: .cancelled, message: "the session ended")) }
      if method.takesOneRequest {
        return .failure(RPCError(code: .invalidArgument, message: "\(self.path) needs one request message before $end"))
      }
    }

    let request: @Sendable (RPCWriter<[UInt8]>) async throws -> Void = { [firstMessage] requests in
      if let firstMessage { try await requests.write(firstMessage) }
      for await event in events {
        if case .message(let bytes) = event { try await requests.write(bytes) }
      }
    }
    return await self.bridge.run(
      method,
      metadata: metadata,
      timeout: timeout,
      transport: .websocket,
      requests: request,
      onHeaders: { headers in
        if let frame = StatusJSON.headersFrame(headers) { try await writer.send(json: frame) }
      },
      onMessage: { json in try await writer.send(json: json) }
    )
  }
}

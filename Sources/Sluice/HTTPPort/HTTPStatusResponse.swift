internal import GRPCCore
internal import NIOCore
internal import NIOHTTP1
internal import SluiceCodec

/// An HTTP error answer whose body is a `google.rpc.Status` JSON object (with the trailers, if
/// any); the connection closes after it.
struct HTTPStatusResponse {
  let head: HTTPResponseHead
  let body: [UInt8]

  init(
    _ status: HTTPResponseStatus,
    code: RPCError.Code,
    message: String,
    trailers: Metadata = [:],
    headers extra: HTTPHeaders = [:],
    bridge: JSONBridge? = nil
  ) {
    self.body =
      JSONValue.object(StatusJSON.status(code: code, message: message, trailers: trailers, bridge: bridge))
      .serializedBytes
    var headers = extra
    if !headers.contains(name: "Vary") { headers.add(name: "Vary", value: "Origin") }  // refusals depend on it
    headers.add(name: "Content-Type", value: "application/json")
    headers.add(name: CORS.noSniff.name, value: CORS.noSniff.value)
    headers.add(name: "Content-Length", value: "\(self.body.count)")
    headers.add(name: "Connection", value: "close")
    self.head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
  }
}

extension HTTPStatusResponse {
  /// Writes the answer on a connection served with async I/O (the body left out for HEAD).
  func write(
    to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>,
    allocator: ByteBufferAllocator,
    includingBody: Bool = true
  ) async throws {
    try await outbound.write(.head(self.head))
    if includingBody { try await outbound.write(.body(.byteBuffer(allocator.buffer(bytes: self.body)))) }
    try await outbound.write(.end(nil))
  }

  /// Writes and flushes the answer from a channel handler; the future completes once written.
  func write(from context: ChannelHandlerContext) -> EventLoopFuture<Void> {
    context.write(NIOAny(HTTPServerResponsePart.head(self.head)), promise: nil)
    let body = context.channel.allocator.buffer(bytes: self.body)
    context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil)
    return context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
  }
}

internal import NIOCore
internal import NIOWebSocket

/// Writes the server's side of a session: JSON text frames, pings and pongs, and the closing
/// handshake. Writes are awaited, so a client that stops reading slows the RPC down (TCP
/// backpressure) instead of growing a buffer.
struct WebSocketFrameWriter: Sendable {
  let outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>
  let allocator: ByteBufferAllocator
  let metrics: GatewayMetrics

  /// The longest header of an unmasked frame. Room for it in front of the payload lets NIO's
  /// encoder write the header in place: one buffer and one write per frame instead of two.
  private static let headerRoom = 10

  /// One JSON document as a text frame.
  func send(json: [UInt8]) async throws {
    var buffer = self.allocator.buffer(capacity: Self.headerRoom + json.count)
    buffer.moveWriterIndex(forwardBy: Self.headerRoom)
    buffer.moveReaderIndex(forwardBy: Self.headerRoom)
    buffer.writeBytes(json)
    try await self.outbound.write(WebSocketFrame(fin: true, opcode: .text, data: buffer))
    self.metrics.bytes(.websocket, .out, count: json.count)
  }

  func ping() async throws {
    try await self.outbound.write(WebSocketFrame(fin: true, opcode: .ping, data: self.allocator.buffer(capacity: 0)))
  }

  func pong(echoing data: ByteBuffer) async throws {
    try await self.outbound.write(WebSocketFrame(fin: true, opcode: .pong, data: data))
  }

  /// A Close frame with `code` and `reason`, cut to the 123 bytes a control frame leaves for it
  /// (on a UTF-8 boundary).
  func close(code: Int, reason: String) async throws {
    var buffer = self.allocator.buffer(capacity: 125)
    buffer.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: code))
    var reasonBytes = Array(reason.utf8.prefix(123))
    while !reasonBytes.isEmpty, String(validating: reasonBytes, as: UTF8.self) == nil {
      reasonBytes.removeLast()
    }
    buffer.writeBytes(reasonBytes)
    try await self.outbound.write(WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer))
  }
}

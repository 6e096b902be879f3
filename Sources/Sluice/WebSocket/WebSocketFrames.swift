internal import NIOCore
internal import NIOWebSocket

/// The frames the server side of a session writes: JSON text frames, pings and pongs, and Close.
enum WebSocketFrames {
  /// The longest header of an unmasked frame. Room for it in front of the payload lets NIO's
  /// encoder write the header in place: one buffer and one write per frame instead of two.
  private static let headerRoom = 10

  /// One JSON document as a text frame.
  static func text(_ json: [UInt8], allocator: ByteBufferAllocator) -> WebSocketFrame {
    var buffer = Self.payloadBuffer(capacity: json.count, allocator: allocator)
    buffer.writeBytes(json)
    return WebSocketFrame(fin: true, opcode: .text, data: buffer)
  }

  /// An empty buffer for a frame's payload of about `capacity` bytes, with room for the header in
  /// front of it.
  static func payloadBuffer(capacity: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
    var buffer = allocator.buffer(capacity: Self.headerRoom + capacity)
    buffer.moveWriterIndex(forwardBy: Self.headerRoom)
    buffer.moveReaderIndex(forwardBy: Self.headerRoom)
    return buffer
  }

  static func ping(allocator: ByteBufferAllocator) -> WebSocketFrame {
    WebSocketFrame(fin: true, opcode: .ping, data: allocator.buffer(capacity: 0))
  }

  static func pong(echoing data: ByteBuffer) -> WebSocketFrame {
    WebSocketFrame(fin: true, opcode: .pong, data: data)
  }

  /// A Close frame with `code` and `reason`, cut to the 123 bytes a control frame leaves for it
  /// (on a UTF-8 boundary).
  static func close(code: Int, reason: String, allocator: ByteBufferAllocator) -> WebSocketFrame {
    var buffer = allocator.buffer(capacity: 125)
    buffer.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: code))
    var reasonBytes = Array(reason.utf8.prefix(123))
    while !reasonBytes.isEmpty, String(validating: reasonBytes, as: UTF8.self) == nil {
      reasonBytes.removeLast()
    }
    buffer.writeBytes(reasonBytes)
    return WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer)
  }
}

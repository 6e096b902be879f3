internal import GRPCCore
internal import NIOCore

/// Cuts gRPC's length-prefixed messages (a compressed-flag byte, a 4-byte big-endian length, the
/// message) out of a stream's DATA frames, however the frames split them.
///
/// Written by hand: the framing is five bytes, and swift-nio's `ByteToMessageDecoder` would add a
/// handler per stream for it. Lengths come from the client, so they are checked against
/// `maximumMessageBytes` before anything is buffered for them.
struct GRPCMessageDeframer {
  /// One message as it arrived: its bytes and whether the client marked them compressed.
  struct Message: Equatable {
    var bytes: ByteBuffer
    var compressed: Bool
    /// The flag byte as sent (gRPC-Web marks its trailer frame with 0x80).
    var flags: UInt8 = 0
  }

  private let maximumMessageBytes: Int
  /// Whether the messages are requests (a server's) or responses (a client's, from an upstream):
  /// what a message over the limit is called.
  private let requests: Bool
  private var buffer: ByteBuffer?

  init(maximumMessageBytes: Int, requests: Bool = true) {
    self.maximumMessageBytes = maximumMessageBytes
    self.requests = requests
  }

  /// Bytes of a message begun but not complete.
  var hasPartialMessage: Bool {
    self.bufferedBytes > 0
  }

  /// How many bytes are buffered (of messages not yet complete, once `next` returned nil).
  var bufferedBytes: Int {
    self.buffer?.readableBytes ?? 0
  }

  /// Adds a DATA frame's bytes.
  mutating func append(_ bytes: ByteBuffer) {
    if self.buffer == nil || self.buffer?.readableBytes == 0 {
      self.buffer = bytes
    } else {
      var incoming = bytes
      self.buffer?.writeBuffer(&incoming)
    }
  }

  /// The next complete message, nil until one is there; throws `RESOURCE_EXHAUSTED` for a
  /// message announced larger than the limit.
  mutating func next() throws(RPCError) -> Message? {
    guard var buffer = self.buffer, buffer.readableBytes >= 5,
      let flag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
      let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self)
    else { return nil }
    guard length <= self.maximumMessageBytes else {
      throw GRPCErrors.messageTooLarge(Int(length), limit: self.maximumMessageBytes, received: self.requests)
    }
    guard buffer.readableBytes - 5 >= Int(length) else { return nil }
    buffer.moveReaderIndex(forwardBy: 5)
    guard let message = buffer.readSlice(length: Int(length)) else { return nil }
    self.buffer = buffer.readableBytes == 0 ? nil : buffer
    return Message(bytes: message, compressed: flag != 0, flags: flag)
  }

  /// Every complete message at the front, still framed, as one slice of the buffer with no copy
  /// (none: `count` 0), for a proxy that forwards them as they are: each one's length is checked
  /// against the limit as `next` does, and a compressed one throws, since only a call without
  /// message encoding is passed through (its peer has no `grpc-encoding` to decode one).
  mutating func nextFramed() throws(RPCError) -> (bytes: ByteBuffer, count: Int) {
    guard var buffer = self.buffer else { return (ByteBuffer(), 0) }
    let start = buffer.readerIndex
    var offset = 0
    var count = 0
    while buffer.readableBytes - offset >= 5,
      let flag = buffer.getInteger(at: start + offset, as: UInt8.self),
      let length = buffer.getInteger(at: start + offset + 1, as: UInt32.self)
    {
      guard length <= self.maximumMessageBytes else {
        throw GRPCErrors.messageTooLarge(Int(length), limit: self.maximumMessageBytes, received: self.requests)
      }
      guard flag == 0 else {
        throw self.requests ? GRPCErrors.compressedWithoutEncoding : GRPCErrors.responseCompressedWithoutEncoding
      }
      // Within the buffer's readable bytes, so no overflow: both are below Int.max.
      guard buffer.readableBytes - offset - 5 >= Int(length) else { break }
      offset += 5 + Int(length)
      count += 1
    }
    guard count > 0, let run = buffer.readSlice(length: offset) else { return (ByteBuffer(), 0) }
    self.buffer = buffer.readableBytes == 0 ? nil : buffer
    return (run, count)
  }
}

extension ByteBuffer {
  /// Writes one gRPC length-prefixed message, as `GRPCMessageDeframer` reads them: the compressed
  /// flag, the 4-byte big-endian length, the message.
  mutating func writeGRPCMessage(_ message: ByteBuffer, compressed: Bool = false) {
    self.writeInteger(UInt8(compressed ? 1 : 0))
    self.writeInteger(UInt32(truncatingIfNeeded: message.readableBytes))
    var message = message
    self.writeBuffer(&message)
  }

  /// Writes one uncompressed gRPC length-prefixed message from bytes.
  mutating func writeGRPCMessage(bytes message: [UInt8]) {
    self.writeInteger(UInt8(0))
    self.writeInteger(UInt32(truncatingIfNeeded: message.count))
    self.writeBytes(message)
  }
}

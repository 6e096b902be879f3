internal import CZlib
internal import GRPCCore
internal import NIOCore

/// Inflates and deflates one gzip-encoded gRPC message with zlib.
///
/// Written on zlib directly: compress-nio (the ByteBuffer gzip library available here) returns
/// whatever it inflated when its input ends early, so a gzip stream cut short, even one of only
/// its header, came out as a shorter (often empty) message and the call went on with it. Here a
/// message is accepted only when zlib reports the gzip stream's end (its CRC and length checked)
/// with no input left over, and never inflates past `limit` bytes (a decompression bomb is
/// refused as too large, not inflated).
enum GzipMessage {
  static func inflate(_ input: ByteBuffer, limit: Int) throws(RPCError) -> ByteBuffer {
    var stream = z_stream()
    guard czlib_inflate_init_gzip(&stream) == Z_OK else {
      throw GRPCErrors.undecodableCompression("zlib could not start")
    }
    defer { inflateEnd(&stream) }
    var output = ByteBuffer()
    var chunk = [UInt8](repeating: 0, count: 16_384)
    var result = Z_OK
    var inputLeft = 0
    input.withUnsafeReadableBytes { raw in
      let bytes = raw.bindMemory(to: UInt8.self)
      stream.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress)
      stream.avail_in = UInt32(truncatingIfNeeded: bytes.count)
      repeat {
        chunk.withUnsafeMutableBufferPointer { out in
          stream.next_out = out.baseAddress
          stream.avail_out = UInt32(out.count)
          result = CZlib.inflate(&stream, Z_NO_FLUSH)
          let produced = out.count - Int(stream.avail_out)
          output.writeBytes(UnsafeBufferPointer(rebasing: out[0..<produced]))
        }
      } while result == Z_OK && output.readableBytes <= limit && (stream.avail_in > 0 || stream.avail_out == 0)
      inputLeft = Int(stream.avail_in)
      stream.next_in = nil
    }
    guard output.readableBytes <= limit else {
      throw GRPCErrors.messageTooLarge(output.readableBytes, limit: limit, received: true)
    }
    guard result == Z_STREAM_END else {
      let cutShort = result == Z_OK || result == Z_BUF_ERROR
      throw GRPCErrors.undecodableCompression(cutShort ? "the gzip stream is cut short" : "zlib error \(result)")
    }
    guard inputLeft == 0 else {
      throw GRPCErrors.undecodableCompression("\(inputLeft) bytes follow the gzip stream")
    }
    return output
  }

  /// `message` as one gzip stream; nil if zlib fails (the message then goes uncompressed).
  static func deflate(_ message: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer? {
    var stream = z_stream()
    guard czlib_deflate_init_gzip(&stream, Z_DEFAULT_COMPRESSION) == Z_OK else { return nil }
    defer { deflateEnd(&stream) }
    // deflateBound: enough room for a single Z_FINISH call to finish the stream.
    let bound = Int(deflateBound(&stream, UInt(message.count)))
    var output = allocator.buffer(capacity: bound)
    var result = Z_OK
    message.withUnsafeBufferPointer { input in
      stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
      stream.avail_in = UInt32(truncatingIfNeeded: input.count)
      output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { raw in
        let out = raw.bindMemory(to: UInt8.self)
        stream.next_out = out.baseAddress
        stream.avail_out = UInt32(truncatingIfNeeded: out.count)
        result = CZlib.deflate(&stream, Z_FINISH)
        return out.count - Int(stream.avail_out)
      }
      stream.next_in = nil
    }
    return result == Z_STREAM_END ? output : nil
  }
}

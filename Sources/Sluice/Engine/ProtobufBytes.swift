internal import NIOCore
internal import SwiftProtobuf

/// A ByteBuffer's readable bytes as SwiftProtobuf's input, so that a request message is parsed
/// where it lies in the DATA frame rather than copied into an array first.
///
/// SwiftProtobuf reads from any `SwiftProtobufContiguousBytes`; swift-nio's ByteBuffer is not
/// one, and no library provides the bridge.
struct ProtobufBytes: SwiftProtobufContiguousBytes {
  private var buffer: ByteBuffer

  init(_ buffer: ByteBuffer) {
    self.buffer = buffer
  }

  init(repeating: UInt8, count: Int) {
    self.buffer = ByteBuffer(repeating: repeating, count: count)
  }

  init(_ sequence: some Sequence<UInt8>) {
    self.buffer = ByteBuffer(bytes: sequence)
  }

  var count: Int { self.buffer.readableBytes }

  func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try self.buffer.withUnsafeReadableBytes(body)
  }

  mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
    try self.buffer.withUnsafeMutableReadableBytes(body)
  }
}

internal import NIOHPACK

/// Header blocks being received, by stream, with their size so far: what both nghttp2 sessions
/// (the native port's and the upstream client's) keep between a block's first field and the end
/// of its HEADERS frame. Sizes are counted as RFC 9113 does (name, value and 32 bytes a field);
/// a block past `limit` is dropped, and the session resets its stream.
struct NGHTTP2IncomingHeaders {
  let limit: Int
  private var blocks: [Int32: (headers: HPACKHeaders, bytes: Int)] = [:]

  init(limit: Int) {
    self.limit = limit
  }

  /// A header block begins on stream `id`.
  mutating func begin(_ id: Int32) {
    // Room for a usual request's fields up front: growing the list field by field reallocated it
    // four times per call.
    var headers = HPACKHeaders()
    headers.reserveCapacity(Self.usualFields)
    self.blocks[id] = (headers, 0)
  }

  private static let usualFields = 12

  /// Names and values over 15 bytes that most calls carry, as strings made once: Swift keeps a
  /// string of up to 15 UTF-8 bytes inline and allocates for a longer one.
  private static let common: [String] = [
    "application/grpc", "application/grpc+proto", "application/grpc-web+proto", "application/json",
    "grpc-accept-encoding", "identity,deflate,gzip",
  ]

  /// `bytes` as a string, one of `common` without an allocation when it is one.
  private static func string(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
    if bytes.count > 15 {
      for string in Self.common where string.utf8.count == bytes.count {
        if string.utf8.withContiguousStorageIfAvailable({ $0.elementsEqual(bytes) }) == true { return string }
      }
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  /// A field name as a string. nghttp2 hands over only valid names (lower-case ASCII tokens),
  /// except in a session that keeps invalid fields (`sluice call`), where a server may send any
  /// byte: each byte past ASCII is written as `\xNN` there, because `HPACKHeaders.add` traps on
  /// a name that is not ASCII.
  private static func name(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
    guard bytes.contains(where: { $0 >= 0x80 }) else { return Self.string(bytes) }
    var name = ""
    for byte in bytes {
      if byte < 0x80 {
        name.unicodeScalars.append(Unicode.Scalar(byte))
      } else {
        name += "\\x" + String(byte, radix: 16, uppercase: true)
      }
    }
    return name
  }

  /// One field of stream `id`'s block; false when the block went past `limit` (it is dropped).
  mutating func add(_ id: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Bool {
    // In place: a copy of the entry would copy the header list for every field.
    guard let index = self.blocks.index(forKey: id) else { return true }
    self.blocks.values[index].bytes += name.count + value.count + 32
    guard self.blocks.values[index].bytes <= self.limit else {
      self.blocks.remove(at: index)
      return false
    }
    self.blocks.values[index].headers.add(name: Self.name(name), value: Self.string(value))
    return true
  }

  /// Stream `id`'s whole block, once its HEADERS frame ended; nil when none was begun (or it was
  /// dropped).
  mutating func finish(_ id: Int32) -> HPACKHeaders? {
    self.blocks.removeValue(forKey: id)?.headers
  }

  /// Forgets stream `id`'s block (the stream closed).
  mutating func drop(_ id: Int32) {
    self.blocks[id] = nil
  }
}

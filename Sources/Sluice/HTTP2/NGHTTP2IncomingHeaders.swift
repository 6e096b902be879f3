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
    self.blocks[id] = ([:], 0)
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
    self.blocks.values[index].headers.add(
      name: String(decoding: name, as: UTF8.self),
      value: String(decoding: value, as: UTF8.self)
    )
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

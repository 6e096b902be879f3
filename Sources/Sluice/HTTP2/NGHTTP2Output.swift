internal import CNGHTTP2
internal import NIOCore
internal import NIOHPACK

/// One stream's outgoing DATA on an nghttp2 session, server or client: the bytes nghttp2 pulls
/// through the stream's data source as flow control allows, and how the stream ends once they are
/// gone (trailers, or END_STREAM on the last DATA). nghttp2 leaves this bookkeeping to the
/// application; it is written by hand here, once for both kinds of session.
struct NGHTTP2Output {
  /// How the stream ends after its DATA.
  enum Ending {
    /// A HEADERS frame with END_STREAM (gRPC trailers).
    case trailers(HPACKHeaders)
    /// END_STREAM on the last DATA frame (a client's half-close).
    case endStream
  }

  /// The result of one pull.
  struct Pull {
    /// Bytes copied, or `NGHTTP2_ERR_DEFERRED` when there is nothing to send yet.
    var result: Int
    /// How many of them were `counted` (see `append`).
    var counted: Int
    /// Trailers to submit now (the DATA ended without END_STREAM).
    var trailers: HPACKHeaders?
  }

  private var chunks = InlineFirstQueue<(bytes: ByteBuffer, counted: Bool)>()
  /// The data source is submitted (nghttp2 pulls from `chunks`).
  var sourceSubmitted = false
  /// The data source returned DEFERRED: `nghttp2_session_resume_data` wakes it.
  var deferred = false
  /// How the stream ends once `chunks` is empty, when it has been decided.
  var ending: Ending?

  var isEmpty: Bool { self.chunks.isEmpty }

  /// Queues DATA; `counted` bytes are reported by the pull that takes them (writability).
  mutating func append(_ bytes: ByteBuffer, counted: Bool) {
    self.chunks.append((bytes, counted))
  }

  /// nghttp2 pulls up to `length` bytes into `buffer`, setting its data flags.
  mutating func pull(into buffer: UnsafeMutablePointer<UInt8>, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Pull
  {
    var written = 0
    var counted = 0
    while written < length, var chunk = self.chunks.popFirst() {
      let take = min(length - written, chunk.bytes.readableBytes)
      chunk.bytes.withUnsafeReadableBytes { bytes in
        if let base = bytes.bindMemory(to: UInt8.self).baseAddress, take > 0 {
          (buffer + written).update(from: base, count: take)
        }
      }
      chunk.bytes.moveReaderIndex(forwardBy: take)
      written += take
      if chunk.counted { counted += take }
      if chunk.bytes.readableBytes > 0 { self.chunks.prepend(chunk) }
    }
    var pull = Pull(result: written, counted: counted, trailers: nil)
    guard self.chunks.isEmpty else { return pull }
    switch self.ending {
    case .trailers(let trailers):
      flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue | NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
      self.ending = nil
      pull.trailers = trailers
    case .endStream:
      flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
      self.ending = nil
    case nil:
      if written == 0 {
        self.deferred = true
        pull.result = Int(NGHTTP2_ERR_DEFERRED.rawValue)
      }
    }
    return pull
  }
}

/// Scratch space for header blocks handed to nghttp2 (which copies them): no allocation per call
/// once it has grown. One per session.
struct NGHTTP2HeaderScratch {
  /// Capacity kept between header blocks; a larger buffer is let go at the next use.
  static let keptCapacity = 16 << 10
  private var bytes: [UInt8] = []
  private var offsets: [(Int, Int, Int)] = []
  private var nameValues: [nghttp2_nv] = []

  /// `headers` as nghttp2's name-value array for the duration of `body`; returns what `body`
  /// returns (an nghttp2 result code).
  mutating func withNameValues(
    _ headers: HPACKHeaders,
    _ body: (UnsafePointer<nghttp2_nv>, Int) -> Int32
  ) -> Int32 {
    // A header block far larger than usual (a big metadata value) leaves no big buffer behind.
    let keep = self.bytes.capacity <= Self.keptCapacity
    self.bytes.removeAll(keepingCapacity: keep)
    self.offsets.removeAll(keepingCapacity: keep)
    for (name, value, _) in headers {
      let nameStart = self.bytes.count
      self.bytes.append(contentsOf: name.utf8)
      let valueStart = self.bytes.count
      self.bytes.append(contentsOf: value.utf8)
      self.offsets.append((nameStart, valueStart, self.bytes.count))
    }
    self.bytes.append(0)  // never empty: a base address even when every field is empty
    let offsets = self.offsets
    var nameValues = self.nameValues
    self.nameValues = []
    defer { self.nameValues = nameValues }
    return self.bytes.withUnsafeMutableBufferPointer { bytes in
      guard let base = bytes.baseAddress else { return NGHTTP2_ERR_INVALID_ARGUMENT.rawValue }
      nameValues.removeAll(keepingCapacity: true)
      for (nameStart, valueStart, end) in offsets {
        nameValues.append(
          nghttp2_nv(
            name: base + nameStart,
            value: base + valueStart,
            namelen: valueStart - nameStart,
            valuelen: end - valueStart,
            flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)
          )
        )
      }
      nameValues.append(nghttp2_nv())  // never empty either
      return nameValues.withUnsafeMutableBufferPointer { fields in
        guard let first = fields.baseAddress else { return NGHTTP2_ERR_INVALID_ARGUMENT.rawValue }
        return body(first, fields.count - 1)
      }
    }
  }
}

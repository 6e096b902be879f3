/// Appends protobuf wire-format data to a byte buffer.
struct BinaryWriter {
  var bytes: [UInt8] = []

  init(capacity: Int = 64) {
    bytes.reserveCapacity(capacity)
  }

  @inline(__always)
  mutating func appendVarint(_ value: UInt64) {
    var value = value
    while value >= 0x80 {
      bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
      value >>= 7
    }
    bytes.append(UInt8(value))
  }

  @inline(__always)
  mutating func appendTag(_ tag: [UInt8]) {
    if tag.count == 1 { bytes.append(tag[0]) } else { bytes.append(contentsOf: tag) }
  }

  @inline(__always)
  mutating func appendFixed32(_ value: UInt32) {
    withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
  }

  @inline(__always)
  mutating func appendFixed64(_ value: UInt64) {
    withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
  }

  /// Reserves one byte for a length prefix; pass the result to `endLengthDelimited`.
  @inline(__always)
  mutating func beginLengthDelimited() -> Int {
    bytes.append(0)
    return bytes.count
  }

  /// Fills in the length of everything written since `beginLengthDelimited`, widening the
  /// prefix (moving the content) when it needs more than one byte.
  @inline(__always)
  mutating func endLengthDelimited(_ contentStart: Int) {
    let length = bytes.count - contentStart
    if length < 0x80 {
      bytes[contentStart - 1] = UInt8(length)
    } else {
      bytes.replaceSubrange((contentStart - 1)..<contentStart, with: varintBytes(UInt64(length)))
    }
  }

  mutating func appendLengthDelimited(_ content: UnsafeBufferPointer<UInt8>) {
    appendVarint(UInt64(content.count))
    bytes.append(contentsOf: content)
  }
}

/// The varint value of a tag: field number and wire type. It cannot overflow, whatever the
/// number: 32 bits shifted by 3 fit in 64 (a valid number has at most 29 bits).
@inline(__always)
func tagValue(number: Int32, wireType: UInt8) -> UInt64 {
  UInt64(UInt32(bitPattern: number)) << 3 | UInt64(wireType & 7)
}

/// Reads protobuf wire-format data, checking every bound.
struct WireReader {
  let base: UnsafeBufferPointer<UInt8>
  var position: Int
  let end: Int

  init(_ base: UnsafeBufferPointer<UInt8>, range: Range<Int>) {
    self.base = base
    self.position = range.lowerBound
    self.end = range.upperBound
  }

  var isAtEnd: Bool { position >= end }

  @inline(__always)
  mutating func readVarint() throws(CodecError) -> UInt64 {
    if position < end, base[position] < 0x80 {
      defer { position += 1 }
      return UInt64(base[position])
    }
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      guard position < end else { throw .wire("truncated varint") }
      let byte = base[position]
      position += 1
      // A 10th byte's surplus bits are dropped, as protobuf runtimes do; an 11th byte is an error.
      if shift == 63 && byte >= 0x80 { throw .wire("varint longer than 10 bytes") }
      result |= UInt64(byte & 0x7F) << shift
      if byte < 0x80 { return result }
      shift += 7
    }
  }

  /// Reads a tag; returns (field number, wire type).
  @inline(__always)
  mutating func readTag() throws(CodecError) -> (Int32, UInt8) {
    let start = position
    let tag = try readVarint()
    // A tag is a 32-bit varint: protobuf's parsers refuse one spelled in more than 5 bytes (an
    // overlong 0x88 0x80 … 0x00 is not field 1), whatever its value.
    guard position - start <= 5 else { throw .wire("tag varint longer than 5 bytes") }
    let number = tag >> 3
    guard number > 0 && number <= 0x1FFF_FFFF else { throw .wire("invalid field number \(number)") }
    let wireType = UInt8(tag & 7)
    guard wireType <= 5 else { throw .wire("invalid wire type \(wireType)") }
    return (Int32(number), wireType)
  }

  @inline(__always)
  mutating func readFixed32() throws(CodecError) -> UInt32 {
    guard end - position >= 4 else { throw .wire("truncated fixed32") }
    var value: UInt32 = 0
    for offset in (0..<4).reversed() { value = value << 8 | UInt32(base[position + offset]) }
    position += 4
    return value
  }

  @inline(__always)
  mutating func readFixed64() throws(CodecError) -> UInt64 {
    guard end - position >= 8 else { throw .wire("truncated fixed64") }
    var value: UInt64 = 0
    for offset in (0..<8).reversed() { value = value << 8 | UInt64(base[position + offset]) }
    position += 8
    return value
  }

  /// Reads a length prefix and returns the range of the content, skipping over it.
  @inline(__always)
  mutating func readLengthDelimited() throws(CodecError) -> Range<Int> {
    let length = try readVarint()
    guard length <= UInt64(end - position) else { throw .wire("truncated length-delimited field") }
    let start = position
    position += Int(length)
    return start..<position
  }

  /// Skips one value of the given wire type (after its tag). Groups are skipped to their end tag.
  mutating func skip(wireType: UInt8, number: Int32, depth: Int, maximumDepth: Int) throws(CodecError) {
    switch wireType {
    case 0: _ = try readVarint()
    case 1: _ = try readFixed64()
    case 2: _ = try readLengthDelimited()
    case 5: _ = try readFixed32()
    case 3:
      guard depth < maximumDepth else {
        throw CodecError(code: .tooDeep, reason: "protobuf binary nests deeper than \(maximumDepth)")
      }
      while true {
        guard !isAtEnd else { throw .wire("unterminated group") }
        let (innerNumber, innerType) = try readTag()
        if innerType == 4 {
          guard innerNumber == number else { throw .wire("mismatched end-group tag") }
          return
        }
        try skip(wireType: innerType, number: innerNumber, depth: depth + 1, maximumDepth: maximumDepth)
      }
    default: throw .wire("unexpected end-group tag")
    }
  }
}

/// True when the bytes are well-formed UTF-8 (RFC 3629: no overlongs, surrogates, or > U+10FFFF).
func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
  var index = 0
  while index < bytes.count {
    if bytes[index] < 0x80 {
      index += 1
    } else if let length = utf8SequenceLength(bytes, at: index) {
      index += length
    } else {
      return false
    }
  }
  return true
}

/// The length of the well-formed multi-byte UTF-8 sequence that starts at `index` (RFC 3629,
/// table of well-formed byte sequences), or nil when there is none.
@inline(__always)
func utf8SequenceLength(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Int? {
  let length: Int
  var lower: UInt8 = 0x80
  var upper: UInt8 = 0xBF
  switch bytes[index] {
  case 0xC2...0xDF: length = 2
  case 0xE0: (length, lower) = (3, 0xA0)
  case 0xE1...0xEC, 0xEE...0xEF: length = 3
  case 0xED: (length, upper) = (3, 0x9F)
  case 0xF0: (length, lower) = (4, 0x90)
  case 0xF1...0xF3: length = 4
  case 0xF4: (length, upper) = (4, 0x8F)
  default: return nil
  }
  guard bytes.count - index >= length, (lower...upper).contains(bytes[index + 1]) else { return nil }
  for offset in 2..<max(2, length) where bytes[index + offset] & 0xC0 != 0x80 { return nil }
  return length
}

extension JSONReader {
  /// Reads a string starting at its opening quote.
  mutating func readString() throws(CodecError) -> String {
    position += 1  // "
    let start = position
    // Fast path: ASCII without escapes.
    while position < end {
      let byte = base[position]
      if byte == UInt8(ascii: "\"") {
        let text = String(decoding: UnsafeBufferPointer(start: base + start, count: position - start), as: UTF8.self)
        position += 1
        return text
      }
      if byte == UInt8(ascii: "\\") || byte >= 0x80 || byte < 0x20 { break }
      position += 1
    }
    // Slow path: escapes and multi-byte sequences, validated and collected.
    var bytes: [UInt8] = []
    bytes.reserveCapacity(position - start + 16)
    bytes.append(contentsOf: UnsafeBufferPointer(start: base + start, count: position - start))
    while true {
      guard position < end else { throw error("unterminated string") }
      let byte = base[position]
      switch byte {
      case UInt8(ascii: "\""):
        position += 1
        return String(decoding: bytes, as: UTF8.self)
      case UInt8(ascii: "\\"):
        try readEscape(into: &bytes)
      case 0..<0x20:
        throw error("control character in a string")
      case 0x20..<0x80:
        bytes.append(byte)
        position += 1
      default:
        try readMultiByte(into: &bytes)
      }
    }
  }

  private mutating func readEscape(into bytes: inout [UInt8]) throws(CodecError) {
    position += 1  // backslash
    guard position < end else { throw error("unterminated string") }
    let byte = base[position]
    position += 1
    switch byte {
    case UInt8(ascii: "\""): bytes.append(0x22)
    case UInt8(ascii: "\\"): bytes.append(0x5C)
    case UInt8(ascii: "/"): bytes.append(0x2F)
    case UInt8(ascii: "b"): bytes.append(0x08)
    case UInt8(ascii: "f"): bytes.append(0x0C)
    case UInt8(ascii: "n"): bytes.append(0x0A)
    case UInt8(ascii: "r"): bytes.append(0x0D)
    case UInt8(ascii: "t"): bytes.append(0x09)
    case UInt8(ascii: "u"):
      var scalar = UInt32(try readHex4())
      if scalar >= 0xD800 && scalar < 0xDC00 {
        guard end - position >= 6, base[position] == UInt8(ascii: "\\"),
          base[position + 1] == UInt8(ascii: "u")
        else { throw error("unpaired surrogate in a \\u escape") }
        position += 2
        let low = UInt32(try readHex4())
        guard low >= 0xDC00 && low < 0xE000 else { throw error("unpaired surrogate in a \\u escape") }
        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
      } else if scalar >= 0xDC00 && scalar < 0xE000 {
        throw error("unpaired surrogate in a \\u escape")
      }
      appendUTF8(scalar, to: &bytes)
    default:
      position -= 1
      throw error("invalid escape")
    }
  }

  private mutating func readHex4() throws(CodecError) -> UInt16 {
    guard end - position >= 4 else { throw error("invalid \\u escape") }
    var value: UInt16 = 0
    for _ in 0..<4 {
      let byte = base[position]
      let digit: UInt8
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
      default: throw error("invalid \\u escape")
      }
      value = value << 4 | UInt16(digit)
      position += 1
    }
    return value
  }

  /// Validates one multi-byte UTF-8 sequence (RFC 3629 table) and copies it.
  private mutating func readMultiByte(into bytes: inout [UInt8]) throws(CodecError) {
    guard let count = utf8SequenceLength(UnsafeBufferPointer(start: base, count: end), at: position) else {
      throw error("invalid UTF-8")
    }
    bytes.append(contentsOf: UnsafeBufferPointer(start: base + position, count: count))
    position += count
  }
}

@inline(__always)
func appendUTF8(_ scalar: UInt32, to bytes: inout [UInt8]) {
  switch scalar {
  case 0..<0x80:
    bytes.append(UInt8(scalar))
  case 0x80..<0x800:
    bytes.append(UInt8(0xC0 | scalar >> 6))
    bytes.append(UInt8(0x80 | scalar & 0x3F))
  case 0x800..<0x10000:
    bytes.append(UInt8(0xE0 | scalar >> 12))
    bytes.append(UInt8(0x80 | scalar >> 6 & 0x3F))
    bytes.append(UInt8(0x80 | scalar & 0x3F))
  default:
    bytes.append(UInt8(0xF0 | scalar >> 18))
    bytes.append(UInt8(0x80 | scalar >> 12 & 0x3F))
    bytes.append(UInt8(0x80 | scalar >> 6 & 0x3F))
    bytes.append(UInt8(0x80 | scalar & 0x3F))
  }
}

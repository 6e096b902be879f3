/// Appends compact JSON text to a byte buffer.
///
/// Strings are escaped minimally (quote, backslash, control characters); other characters are
/// written as UTF-8. Numbers use the shortest representation that round-trips.
struct JSONWriter {
  var bytes: [UInt8] = []

  init(capacity: Int = 64) {
    bytes.reserveCapacity(capacity)
  }

  @inline(__always)
  mutating func append(_ byte: UInt8) { bytes.append(byte) }

  @inline(__always)
  mutating func append(_ other: [UInt8]) { bytes.append(contentsOf: other) }

  mutating func appendLiteral(_ text: StaticString) {
    bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
  }

  /// Removes a trailing comma, if any (used after writing a list of members).
  @inline(__always)
  mutating func dropTrailingComma() {
    if bytes.last == UInt8(ascii: ",") { bytes.removeLast() }
  }

  mutating func writeString(_ text: String) {
    var text = text
    text.withUTF8 { writeString(utf8: $0) }
  }

  /// Writes a quoted, escaped string from UTF-8 bytes (assumed valid).
  mutating func writeString(utf8: UnsafeBufferPointer<UInt8>) {
    bytes.append(UInt8(ascii: "\""))
    var runStart = 0
    var index = 0
    let count = utf8.count
    while index < count {
      let byte = utf8[index]
      if byte >= 0x20 && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") {
        index += 1
        continue
      }
      if index > runStart {
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
      }
      bytes.append(UInt8(ascii: "\\"))
      switch byte {
      case UInt8(ascii: "\""): bytes.append(UInt8(ascii: "\""))
      case UInt8(ascii: "\\"): bytes.append(UInt8(ascii: "\\"))
      case 0x0A: bytes.append(UInt8(ascii: "n"))
      case 0x0D: bytes.append(UInt8(ascii: "r"))
      case 0x09: bytes.append(UInt8(ascii: "t"))
      case 0x08: bytes.append(UInt8(ascii: "b"))
      case 0x0C: bytes.append(UInt8(ascii: "f"))
      default:
        bytes.append(UInt8(ascii: "u"))
        bytes.append(UInt8(ascii: "0"))
        bytes.append(UInt8(ascii: "0"))
        bytes.append(Self.hexDigit(byte >> 4))
        bytes.append(Self.hexDigit(byte & 0xF))
      }
      index += 1
      runStart = index
    }
    if count > runStart {
      bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<count]))
    }
    bytes.append(UInt8(ascii: "\""))
  }

  @inline(__always)
  private static func hexDigit(_ nibble: UInt8) -> UInt8 {
    nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
  }

  /// Writes a decimal unsigned integer.
  mutating func writeUInt(_ value: UInt64) {
    if value < 10 {
      bytes.append(UInt8(ascii: "0") + UInt8(value))
      return
    }
    var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch, enough for 20 digits
    withUnsafeMutableBytes(of: &digits) { scratch in
      var value = value
      var index = scratch.count
      while value > 0 {
        index -= 1
        scratch[index] = UInt8(ascii: "0") + UInt8(value % 10)
        value /= 10
      }
      bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[index...]))
    }
  }

  /// Writes a decimal signed integer.
  mutating func writeInt(_ value: Int64) {
    if value < 0 {
      bytes.append(UInt8(ascii: "-"))
      writeUInt(value.magnitude)
    } else {
      writeUInt(UInt64(value))
    }
  }

  /// Writes a double: non-finite values as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
  mutating func writeDouble(_ value: Double) {
    if value.isFinite {
      writeFiniteNumber(value.description)
    } else {
      writeNonFinite(value.isNaN ? "NaN" : value < 0 ? "-Infinity" : "Infinity")
    }
  }

  /// Writes a float with the shortest digits that round-trip as a 32-bit float.
  mutating func writeFloat(_ value: Float) {
    if value.isFinite {
      writeFiniteNumber(value.description)
    } else {
      writeNonFinite(value.isNaN ? "NaN" : value < 0 ? "-Infinity" : "Infinity")
    }
  }

  private mutating func writeNonFinite(_ text: StaticString) {
    bytes.append(UInt8(ascii: "\""))
    appendLiteral(text)
    bytes.append(UInt8(ascii: "\""))
  }

  /// Swift prints `1.0`, `1e-05`, `1e+16`; all valid JSON numbers. Integral values drop `.0`.
  private mutating func writeFiniteNumber(_ text: String) {
    var text = text
    text.withUTF8 { utf8 in
      if utf8.count > 2, utf8[utf8.count - 2] == UInt8(ascii: "."), utf8[utf8.count - 1] == UInt8(ascii: "0") {
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[..<(utf8.count - 2)]))
      } else {
        bytes.append(contentsOf: utf8)
      }
    }
  }

  /// Writes any JSON value compactly.
  mutating func write(_ value: JSONValue) {
    switch value {
    case .null: appendLiteral("null")
    case .bool(let flag): flag ? appendLiteral("true") : appendLiteral("false")
    case .number(let lexeme): bytes.append(contentsOf: lexeme.utf8)
    case .string(let text): writeString(text)
    case .array(let elements):
      bytes.append(UInt8(ascii: "["))
      for (index, element) in elements.enumerated() {
        if index > 0 { bytes.append(UInt8(ascii: ",")) }
        write(element)
      }
      bytes.append(UInt8(ascii: "]"))
    case .object(let object):
      bytes.append(UInt8(ascii: "{"))
      for (index, member) in object.members.enumerated() {
        if index > 0 { bytes.append(UInt8(ascii: ",")) }
        writeString(member.key)
        bytes.append(UInt8(ascii: ":"))
        write(member.value)
      }
      bytes.append(UInt8(ascii: "}"))
    }
  }
}

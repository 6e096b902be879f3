/// The JSON text reader: a strict RFC 8259 scanner written for this codec.
///
/// Chosen by measurement among three candidates, correctness first, then speed. Parsing the
/// 58-byte `proto.StreamRequest` document `{"pt":{"name":"gRPC Stream Client: Route","value":123456}}`
/// (Swift 6.3.1 release build, Linux x86-64, 2 shared cores; `swift run -c release CodecBenchmark`
/// prints the first two rows, `scripts/measure-jansson.sh` the third):
///
/// | reader | uint64 max / int64 min exact | duplicate keys | depth limit | invalid UTF-8 | parses/s |
/// |---|---|---|---|---|---:|
/// | this scanner | yes (numbers keep their lexeme) | rejected | ours (default 100) | rejected | 5,737,000 |
/// | Foundation `JSONSerialization` | yes on this Foundation | silently last-wins | fixed | rejected | 746,000 |
/// | libjansson 2.14 `json_loadb` | no: "too big integer" above Int64.max | `JSON_REJECT_DUPLICATES` | fixed at build | rejected | 1,290,000 |
///
/// `JSONSerialization` fails the duplicate-key rule and is 7× slower (and yields `Any`, which
/// would need a second conversion); jansson cannot hold uint64/fixed64 values above
/// `Int64.max`, would need `libjansson-dev` in CI and a systemLibrary target, and is 4× slower.
/// The scanner below has none of these problems and adds no dependency.
///
/// Rules enforced: one value per document (surrounding whitespace allowed), no trailing
/// commas, no leading zeros, no control characters in strings, valid escapes (surrogate
/// pairs must pair), well-formed UTF-8 (no overlongs, no surrogates, ≤ U+10FFFF), unique
/// object keys, nesting at most `maximumDepth` arrays/objects.
struct JSONReader: ~Copyable {
  let base: UnsafePointer<UInt8>
  let end: Int
  var position = 0
  let maximumDepth: Int
  var depth = 0

  private init(base: UnsafePointer<UInt8>, count: Int, maximumDepth: Int) {
    self.base = base
    self.end = count
    self.maximumDepth = maximumDepth
  }

  /// Parses the whole buffer as one JSON value.
  static func parse(
    _ bytes: UnsafeBufferPointer<UInt8>, maximumDepth: Int
  ) throws(CodecError) -> JSONValue {
    guard let base = bytes.baseAddress, !bytes.isEmpty else {
      throw CodecError(code: .malformedJSON, reason: "malformed JSON at byte 0: unexpected end of input")
    }
    var reader = JSONReader(base: base, count: bytes.count, maximumDepth: maximumDepth)
    reader.skipWhitespace()
    let value = try reader.readValue()
    reader.skipWhitespace()
    if reader.position != reader.end {
      throw reader.error("unexpected data after the JSON value")
    }
    return value
  }

  func error(_ reason: String) -> CodecError {
    CodecError(code: .malformedJSON, reason: "malformed JSON at byte \(position): \(reason)")
  }

  @inline(__always)
  private mutating func skipWhitespace() {
    while position < end {
      switch base[position] {
      case 0x20, 0x0A, 0x0D, 0x09: position += 1
      default: return
      }
    }
  }

  private mutating func readValue() throws(CodecError) -> JSONValue {
    guard position < end else { throw error("unexpected end of input") }
    switch base[position] {
    case UInt8(ascii: "{"): return try readObject()
    case UInt8(ascii: "["): return try readArray()
    case UInt8(ascii: "\""): return .string(try readString())
    case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
    case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
    case UInt8(ascii: "n"): try expectLiteral("null"); return .null
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try readNumber())
    default: throw error("unexpected character")
    }
  }

  private mutating func expectLiteral(_ literal: StaticString) throws(CodecError) {
    let count = literal.utf8CodeUnitCount
    guard end - position >= count else { throw error("invalid literal") }
    let expected = literal.utf8Start
    for offset in 0..<count where base[position + offset] != expected[offset] {
      throw error("invalid literal")
    }
    position += count
  }

  private mutating func enter() throws(CodecError) {
    depth += 1
    if depth > maximumDepth {
      throw CodecError(code: .tooDeep, reason: "JSON nesting exceeds the limit of \(maximumDepth)")
    }
  }

  private mutating func readObject() throws(CodecError) -> JSONValue {
    try enter()
    position += 1  // {
    var members: [(key: String, value: JSONValue)] = []
    skipWhitespace()
    if position < end, base[position] == UInt8(ascii: "}") {
      position += 1
      depth -= 1
      return .object(JSONObject(members))
    }
    var keys: Set<String>? = nil  // only for large objects; small ones are scanned linearly
    while true {
      skipWhitespace()
      guard position < end, base[position] == UInt8(ascii: "\"") else {
        throw error("expected a string key")
      }
      let keyStart = position
      let key = try readString()
      if members.count < 16 {
        for member in members where member.key == key {
          position = keyStart
          throw error("duplicate key \"\(key)\"")
        }
      } else {
        if keys == nil { keys = Set(members.map(\.key)) }
        if !keys!.insert(key).inserted {
          position = keyStart
          throw error("duplicate key \"\(key)\"")
        }
      }
      skipWhitespace()
      guard position < end, base[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
      position += 1
      skipWhitespace()
      let value = try readValue()
      members.append((key: key, value: value))
      skipWhitespace()
      guard position < end else { throw error("unexpected end of input in an object") }
      if base[position] == UInt8(ascii: ",") {
        position += 1
      } else if base[position] == UInt8(ascii: "}") {
        position += 1
        depth -= 1
        return .object(JSONObject(members))
      } else {
        throw error("expected ',' or '}'")
      }
    }
  }

  private mutating func readArray() throws(CodecError) -> JSONValue {
    try enter()
    position += 1  // [
    var elements: [JSONValue] = []
    skipWhitespace()
    if position < end, base[position] == UInt8(ascii: "]") {
      position += 1
      depth -= 1
      return .array(elements)
    }
    while true {
      skipWhitespace()
      elements.append(try readValue())
      skipWhitespace()
      guard position < end else { throw error("unexpected end of input in an array") }
      if base[position] == UInt8(ascii: ",") {
        position += 1
      } else if base[position] == UInt8(ascii: "]") {
        position += 1
        depth -= 1
        return .array(elements)
      } else {
        throw error("expected ',' or ']'")
      }
    }
  }

  private mutating func readNumber() throws(CodecError) -> String {
    let start = position
    if base[position] == UInt8(ascii: "-") { position += 1 }
    guard position < end, isDigit(base[position]) else { throw error("invalid number") }
    if base[position] == UInt8(ascii: "0") {
      position += 1
      if position < end, isDigit(base[position]) { throw error("leading zero in a number") }
    } else {
      while position < end, isDigit(base[position]) { position += 1 }
    }
    if position < end, base[position] == UInt8(ascii: ".") {
      position += 1
      guard position < end, isDigit(base[position]) else { throw error("invalid number") }
      while position < end, isDigit(base[position]) { position += 1 }
    }
    if position < end, base[position] | 0x20 == UInt8(ascii: "e") {
      position += 1
      if position < end, base[position] == UInt8(ascii: "+") || base[position] == UInt8(ascii: "-") {
        position += 1
      }
      guard position < end, isDigit(base[position]) else { throw error("invalid number") }
      while position < end, isDigit(base[position]) { position += 1 }
    }
    return String(decoding: UnsafeBufferPointer(start: base + start, count: position - start), as: UTF8.self)
  }

  @inline(__always)
  private func isDigit(_ byte: UInt8) -> Bool { byte &- UInt8(ascii: "0") < 10 }
}

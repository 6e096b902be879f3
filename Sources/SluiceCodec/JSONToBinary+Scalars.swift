extension JSONToBinary {
  /// Converts a JSON value to the wire value of a scalar field (numbers, bool, string, bytes, enum).
  func scalar(_ value: JSONValue, field: FieldLayout) throws(CodecError) -> ScalarValue {
    switch field.kind {
    case .string:
      guard case .string(let text) = value else { throw mismatch("string", value) }
      return .string(text)
    case .bool:
      guard case .bool(let flag) = value else { throw mismatch("bool", value) }
      return .varint(flag ? 1 : 0)
    case .bytes:
      guard case .string(let text) = value else { throw mismatch("bytes (base64)", value) }
      guard let data = Base64.decode(text) else { throw mismatch("bytes (base64)", value) }
      return .bytes(data)
    case .double:
      return .fixed64(try floatingPoint(value, kind: .double).bitPattern)
    case .float:
      let double = try floatingPoint(value, kind: .float)
      return .fixed32(Float(double).bitPattern)
    case .enumeration:
      return try enumScalar(value, field: field)
    case .message, .group:
      throw mismatch("a message", value)
    default:
      return try integerScalar(value, kind: field.kind)
    }
  }

  private func enumScalar(_ value: JSONValue, field: FieldLayout) throws(CodecError) -> ScalarValue {
    let enumLayout = pool.enums[field.enumIndex]
    switch value {
    case .string(let name):
      if let number = enumLayout.numbersByName[name] {
        return .varint(UInt64(bitPattern: Int64(number)))
      }
      if let number = Int32(name), !enumLayout.isClosed || enumLayout.namesByNumber[number] != nil {
        return .varint(UInt64(bitPattern: Int64(number)))
      }
      if ignoreUnknownFields { return .skipped }
      throw .invalid("unknown value \"\(name)\" for enum \(enumLayout.fullName)")
    case .number:
      let scalar = try integerScalar(value, kind: .int32)
      if enumLayout.isClosed, case .varint(let raw) = scalar,
        enumLayout.namesByNumber[Int32(truncatingIfNeeded: raw)] == nil
      {
        throw .invalid("unknown value \(describe(value)) for closed enum \(enumLayout.fullName)")
      }
      return scalar
    case .null where enumLayout.fullName == "google.protobuf.NullValue":
      return .varint(0)
    default:
      throw mismatch("enum \(enumLayout.fullName)", value)
    }
  }

  /// Integers: JSON numbers or strings; an exponent or fraction is accepted when the value is integral.
  func integerScalar(_ value: JSONValue, kind: FieldKind) throws(CodecError) -> ScalarValue {
    let lexeme: String
    switch value {
    case .number(let text): lexeme = text
    case .string(let text): lexeme = text
    default: throw mismatch(kind.protoName, value)
    }
    guard let (negative, magnitude, overflow) = Self.parseInteger(lexeme) else {
      throw mismatch(kind.protoName, value)
    }
    func outOfRange() -> CodecError {
      .invalid("value \(describe(value)) is out of range for \(kind.protoName)")
    }
    if overflow { throw outOfRange() }
    switch kind {
    case .int32, .sint32, .sfixed32:
      guard magnitude <= (negative ? 0x8000_0000 : 0x7FFF_FFFF) else { throw outOfRange() }
      let signed = negative ? Int32(truncatingIfNeeded: 0 &- magnitude) : Int32(magnitude)
      switch kind {
      case .sint32: return .varint(UInt64(UInt32(bitPattern: (signed << 1) ^ (signed >> 31))))
      case .sfixed32: return .fixed32(UInt32(bitPattern: signed))
      default: return .varint(UInt64(bitPattern: Int64(signed)))
      }
    case .uint32, .fixed32:
      guard !negative || magnitude == 0, magnitude <= UInt64(UInt32.max) else { throw outOfRange() }
      return kind == .fixed32 ? .fixed32(UInt32(magnitude)) : .varint(magnitude)
    case .int64, .sint64, .sfixed64:
      guard magnitude <= (negative ? 0x8000_0000_0000_0000 : 0x7FFF_FFFF_FFFF_FFFF) else { throw outOfRange() }
      let signed = negative ? Int64(truncatingIfNeeded: 0 &- magnitude) : Int64(magnitude)
      switch kind {
      case .sint64: return .varint(UInt64(bitPattern: (signed << 1) ^ (signed >> 63)))
      case .sfixed64: return .fixed64(UInt64(bitPattern: signed))
      default: return .varint(UInt64(bitPattern: signed))
      }
    case .uint64, .fixed64:
      guard !negative || magnitude == 0 else { throw outOfRange() }
      return kind == .fixed64 ? .fixed64(magnitude) : .varint(magnitude)
    default:
      throw mismatch(kind.protoName, value)
    }
  }

  /// Parses `-?digits`, or a number with fraction/exponent whose value is integral.
  /// Returns nil for anything else (including whitespace and a leading `+`).
  /// `overflow` is true when the magnitude does not fit 64 bits.
  static func parseInteger(_ lexeme: String) -> (negative: Bool, magnitude: UInt64, overflow: Bool)? {
    var utf8 = lexeme.utf8[...]
    let negative = utf8.first == UInt8(ascii: "-")
    if negative { utf8 = utf8.dropFirst() }
    guard !utf8.isEmpty else { return nil }
    var magnitude: UInt64 = 0
    var simple = true
    for byte in utf8 {
      let digit = byte &- UInt8(ascii: "0")
      guard digit < 10 else {
        simple = false
        break
      }
      let (times10, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
      let (sum, overflow2) = times10.addingReportingOverflow(UInt64(digit))
      if overflow1 || overflow2 {
        // Out of every range, if it is a number at all.
        return utf8.allSatisfy({ $0 &- UInt8(ascii: "0") < 10 }) ? (negative, 0, true) : nil
      }
      magnitude = sum
    }
    if simple { return (negative, magnitude, false) }
    // Fraction or exponent: must be a JSON number whose value is an integer.
    guard Self.looksNumeric(utf8), let double = Double(Substring(utf8)), double.isFinite,
      double == double.rounded(.towardZero)
    else { return nil }
    if double >= 18_446_744_073_709_551_616.0 { return (negative, 0, true) }
    return (negative, UInt64(double), false)
  }

  private static func looksNumeric(_ utf8: Substring.UTF8View) -> Bool {
    guard let first = utf8.first, first &- UInt8(ascii: "0") < 10 else { return false }
    return utf8.allSatisfy { byte in
      byte &- UInt8(ascii: "0") < 10 || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e")
        || byte == UInt8(ascii: "E") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")
    }
  }

  /// Floats: JSON numbers, numeric strings, or "NaN", "Infinity", "-Infinity".
  func floatingPoint(_ value: JSONValue, kind: FieldKind) throws(CodecError) -> Double {
    let double: Double
    switch value {
    case .number(let lexeme):
      guard let parsed = Double(lexeme) else { throw mismatch(kind.protoName, value) }
      double = parsed
      guard double.isFinite else { throw .invalid("value \(lexeme) is out of range for \(kind.protoName)") }
    case .string(let text):
      switch text {
      case "NaN": return .nan
      case "Infinity": return .infinity
      case "-Infinity": return -.infinity
      default:
        var utf8 = text.utf8[...]
        if utf8.first == UInt8(ascii: "-") { utf8 = utf8.dropFirst() }
        guard Self.looksNumeric(utf8), let parsed = Double(text) else { throw mismatch(kind.protoName, value) }
        double = parsed
        guard double.isFinite else { throw .invalid("value \"\(text)\" is out of range for \(kind.protoName)") }
      }
    default:
      throw mismatch(kind.protoName, value)
    }
    if kind == .float && !Float(double).isFinite {
      throw .invalid("value \(describe(value)) is out of range for float")
    }
    return double
  }

  func mismatch(_ expected: String, _ value: JSONValue) -> CodecError {
    .invalid("expected \(expected), got \(describe(value))")
  }
}

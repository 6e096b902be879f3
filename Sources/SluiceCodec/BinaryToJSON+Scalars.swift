extension BinaryToJSON {
  /// Writes one scalar occurrence (64-bit integers quoted, enums by name, bytes as base64).
  mutating func writeScalar(
    _ field: FieldLayout, _ entry: WireEntry, _ buffer: UnsafeBufferPointer<UInt8>
  ) throws(CodecError) {
    let value = entry.value
    switch field.kind {
    case .int32:
      writer.writeInt(Int64(Int32(truncatingIfNeeded: value)))
    case .uint32:
      writer.writeUInt(UInt64(UInt32(truncatingIfNeeded: value)))
    case .sint32:
      let raw = UInt32(truncatingIfNeeded: value)
      writer.writeInt(Int64(Int32(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))))
    case .fixed32:
      writer.writeUInt(value)
    case .sfixed32:
      writer.writeInt(Int64(Int32(bitPattern: UInt32(truncatingIfNeeded: value))))
    case .int64, .sfixed64:
      writer.append(UInt8(ascii: "\""))
      writer.writeInt(Int64(bitPattern: value))
      writer.append(UInt8(ascii: "\""))
    case .uint64, .fixed64:
      writer.append(UInt8(ascii: "\""))
      writer.writeUInt(value)
      writer.append(UInt8(ascii: "\""))
    case .sint64:
      writer.append(UInt8(ascii: "\""))
      writer.writeInt(Int64(bitPattern: (value >> 1) ^ (0 &- (value & 1))))
      writer.append(UInt8(ascii: "\""))
    case .bool:
      if value != 0 { writer.appendLiteral("true") } else { writer.appendLiteral("false") }
    case .double:
      writer.writeDouble(Double(bitPattern: value))
    case .float:
      writer.writeFloat(Float(bitPattern: UInt32(truncatingIfNeeded: value)))
    case .enumeration:
      writeEnum(Int32(truncatingIfNeeded: value), enumIndex: field.enumIndex)
    case .string:
      let text = UnsafeBufferPointer(rebasing: buffer[entry.range])
      // proto3 strings were validated by `scan`; JSON cannot carry a proto2 string that is not UTF-8.
      guard field.validatesUTF8 || isValidUTF8(text) else {
        throw .wire("string field \(field.name) holds invalid UTF-8, which JSON cannot represent")
      }
      writer.writeString(utf8: text)
    case .bytes:
      Base64.encodeQuoted(UnsafeBufferPointer(rebasing: buffer[entry.range]), into: &writer.bytes)
    case .message, .group:
      try writeMessage(buffer, entry.range, messageIndex: field.messageIndex)
    }
  }

  mutating func writeEnum(_ number: Int32, enumIndex: Int) {
    let enumLayout = pool.enums[enumIndex]
    // With enumsAsIntegers a NullValue field is a number too (as protobuf python prints it);
    // inside google.protobuf.Value it is always null (see writeWellKnown).
    if !options.enumsAsIntegers && enumLayout.fullName == "google.protobuf.NullValue" {
      writer.appendLiteral("null")
    } else if !options.enumsAsIntegers, let quoted = enumLayout.quotedNamesByNumber[number] {
      writer.append(quoted)
    } else {
      writer.writeInt(Int64(number))  // an unknown value of an open enum stays a number
    }
  }

  /// Writes the default value of a field that is absent from the wire.
  mutating func writeDefault(_ field: FieldLayout) {
    if field.isMap {
      writer.appendLiteral("{}")
      return
    }
    if field.isRepeated {
      writer.appendLiteral("[]")
      return
    }
    switch field.kind {
    case .int64, .uint64, .sint64, .fixed64, .sfixed64: writer.appendLiteral("\"0\"")
    case .bool: writer.appendLiteral("false")
    case .string, .bytes: writer.appendLiteral("\"\"")
    case .enumeration: writeEnum(0, enumIndex: field.enumIndex)
    case .message, .group: writer.appendLiteral("null")  // not reached: messages have presence
    default: writer.append(UInt8(ascii: "0"))
    }
  }
}

extension JSONToBinary {
  /// Writes the content of a well-known type from its special JSON form.
  mutating func encodeWellKnown(
    _ wellKnown: WellKnownType, _ value: JSONValue, layout: MessageLayout
  ) throws(CodecError) {
    switch wellKnown {
    case .timestamp:
      guard case .string(let text) = value, let (seconds, nanos) = WellKnownText.parseTimestamp(text) else {
        throw mismatch("an RFC 3339 timestamp between years 0001 and 9999", value)
      }
      writeSecondsAndNanos(seconds, nanos)
    case .duration:
      guard case .string(let text) = value, let (seconds, nanos) = WellKnownText.parseDuration(text) else {
        throw mismatch("a duration like \"1.5s\" within ±315576000000s", value)
      }
      writeSecondsAndNanos(seconds, nanos)
    case .fieldMask:
      guard case .string(let text) = value else { throw mismatch("a field mask string", value) }
      guard !text.isEmpty else { return }
      for path in text.split(separator: ",", omittingEmptySubsequences: false) {
        guard let snake = WellKnownText.snakeCasePath(String(path)) else {
          throw .invalid("invalid field mask path \"\(path)\"")
        }
        writer.bytes.append(0x0A)
        write(.string(snake))
      }
    case .structValue:
      guard case .object(let object) = value else { throw mismatch("an object (Struct)", value) }
      let valueIndex = pool.messages[layout.fields[0].messageIndex].fields[1].messageIndex
      guard valueIndex >= 0 else { throw .invalid("google.protobuf.Struct in the set has no message values") }
      for member in object.members {
        writer.bytes.append(0x0A)
        let entryStart = writer.beginLengthDelimited()
        writer.bytes.append(0x0A)
        write(.string(member.key))
        writer.bytes.append(0x12)
        let valueStart = writer.beginLengthDelimited()
        do throws(CodecError) {
          try encodeMessage(member.value, messageIndex: valueIndex)
        } catch {
          throw error.prefixed(member.key)
        }
        writer.endLengthDelimited(valueStart)
        writer.endLengthDelimited(entryStart)
      }
    case .listValue:
      guard case .array(let elements) = value else { throw mismatch("an array (ListValue)", value) }
      let valueIndex = layout.fields[0].messageIndex
      for (index, element) in elements.enumerated() {
        writer.bytes.append(0x0A)
        let start = writer.beginLengthDelimited()
        do throws(CodecError) {
          try encodeMessage(element, messageIndex: valueIndex)
        } catch {
          throw error.prefixed("[\(index)]")
        }
        writer.endLengthDelimited(start)
      }
    case .value:
      try encodeValue(value, layout: layout)
    case .any:
      try encodeAny(value)
    case .empty:
      break  // handled as an ordinary message
    default:  // wrappers: the bare value is field 1
      let field = layout.fields[0]
      let scalar = try self.scalar(value, field: field)
      if !scalar.isDefault {
        writer.appendTag(field.tag)
        write(scalar)
      }
    }
  }

  private mutating func writeSecondsAndNanos(_ seconds: Int64, _ nanos: Int32) {
    if seconds != 0 {
      writer.bytes.append(0x08)
      writer.appendVarint(UInt64(bitPattern: seconds))
    }
    if nanos != 0 {
      writer.bytes.append(0x10)
      writer.appendVarint(UInt64(bitPattern: Int64(nanos)))
    }
  }

  /// google.protobuf.Value: null → null_value, number → number_value, and so on.
  private mutating func encodeValue(_ value: JSONValue, layout: MessageLayout) throws(CodecError) {
    switch value {
    case .null:
      writer.bytes.append(contentsOf: [0x08, 0x00])
    case .number(let lexeme):
      guard let double = Double(lexeme), double.isFinite else {
        throw .invalid("value \(lexeme) is out of range for a double")
      }
      writer.bytes.append(0x11)
      writer.appendFixed64(double.bitPattern)
    case .string(let text):
      writer.bytes.append(0x1A)
      write(.string(text))
    case .bool(let flag):
      writer.bytes.append(contentsOf: [0x20, flag ? 1 : 0])
    case .object, .array:
      let isObject = if case .object = value { true } else { false }
      guard let field = layout.fieldIndex(number: isObject ? 5 : 6).map({ layout.fields[$0] }) else {
        throw .invalid("google.protobuf.Value lacks its struct_value/list_value field")
      }
      writer.appendTag(field.tag)
      let start = writer.beginLengthDelimited()
      try encodeMessage(value, messageIndex: field.messageIndex)
      writer.endLengthDelimited(start)
    }
  }

  /// google.protobuf.Any: `{"@type": url, ...fields}` or `{"@type": url, "value": <special JSON>}`.
  private mutating func encodeAny(_ value: JSONValue) throws(CodecError) {
    guard case .object(let object) = value else { throw mismatch("an object (Any)", value) }
    if object.isEmpty { return }
    guard let typeValue = object["@type"] else {
      throw .invalid("google.protobuf.Any needs an \"@type\" member")
    }
    guard case .string(let typeURL) = typeValue, let slash = typeURL.lastIndex(of: "/") else {
      throw CodecError(code: .invalidValue, reason: "invalid type URL \(describe(typeValue))", path: ["@type"])
    }
    let typeName = String(typeURL[typeURL.index(after: slash)...])
    guard let messageIndex = pool.messageIndexByName[typeName] else {
      throw CodecError(code: .unknownType, reason: "type \"\(typeName)\" is not in the registry", path: ["@type"])
    }
    writer.bytes.append(0x0A)
    write(.string(typeURL))
    writer.bytes.append(0x12)
    let start = writer.beginLengthDelimited()
    let inner = pool.messages[messageIndex]
    if let wellKnown = inner.wellKnown, wellKnown != .empty {
      for member in object.members where member.key != "@type" && member.key != "value" && !ignoreUnknownFields {
        throw CodecError(
          code: .unknownField, reason: "only \"@type\" and \"value\" may appear in an Any holding \(typeName)",
          path: [member.key])
      }
      guard let innerValue = object["value"] else {
        throw .invalid("google.protobuf.Any holding \(typeName) needs a \"value\" member")
      }
      do throws(CodecError) {
        try encodeMessage(innerValue, messageIndex: messageIndex)
      } catch {
        throw error.prefixed("value")
      }
    } else {
      try encodeFields(of: object, layout: inner, skippingTypeKey: true)
    }
    writer.endLengthDelimited(start)
  }
}

/// Writes the protobuf binary form of a parsed JSON value, field by field, straight from the
/// descriptor layouts (no intermediate message objects).
///
/// Fields are written in the order of the JSON members; every protobuf parser accepts any
/// field order. Implicit-presence fields holding their default are not written, as protobuf
/// runtimes do; fields with presence (oneof members, `optional`, messages) always are.
struct JSONToBinary {
  let pool: DescriptorPool
  let ignoreUnknownFields: Bool
  let maximumDepth: Int
  var writer: BinaryWriter
  private var depth = 0

  init(pool: DescriptorPool, ignoreUnknownFields: Bool, maximumDepth: Int, capacity: Int) {
    self.pool = pool
    self.ignoreUnknownFields = ignoreUnknownFields
    self.maximumDepth = maximumDepth
    self.writer = BinaryWriter(capacity: capacity)
  }

  /// Writes the content (no tag, no length) of a message.
  mutating func encodeMessage(_ value: JSONValue, messageIndex: Int) throws(CodecError) {
    depth += 1
    defer { depth -= 1 }
    if depth > maximumDepth {
      throw CodecError(code: .tooDeep, reason: "messages nest deeper than \(maximumDepth)")
    }
    let layout = pool.messages[messageIndex]
    if let wellKnown = layout.wellKnown, wellKnown != .empty {
      try encodeWellKnown(wellKnown, value, layout: layout)
      return
    }
    guard case .object(let object) = value else {
      throw .invalid("expected an object (\(layout.fullName)), got \(describe(value))")
    }
    try encodeFields(of: object, layout: layout, skippingTypeKey: false)
  }

  mutating func encodeFields(
    of object: JSONObject, layout: MessageLayout, skippingTypeKey: Bool
  ) throws(CodecError) {
    var seen: UInt64 = 0
    var seenBeyond64: Set<Int> = []
    var oneofMembers: [Int] = layout.oneofNames.isEmpty ? [] : Array(repeating: -1, count: layout.oneofNames.count)
    for member in object.members {
      guard let index = layout.fieldIndex(name: member.key) else {
        if skippingTypeKey && member.key == "@type" { continue }
        if ignoreUnknownFields { continue }
        throw CodecError(code: .unknownField, reason: "", path: [member.key])
      }
      if index < 64 {
        let bit: UInt64 = 1 << UInt64(index)
        guard seen & bit == 0 else { throw duplicate(layout.fields[index], key: member.key) }
        seen |= bit
      } else {
        guard seenBeyond64.insert(index).inserted else { throw duplicate(layout.fields[index], key: member.key) }
      }
      do throws(CodecError) {
        try encodeField(
          layout.fields[index], fieldIndex: index, member.value, layout: layout, oneofMembers: &oneofMembers)
      } catch {
        throw error.prefixed(member.key)
      }
    }
  }

  private func duplicate(_ field: FieldLayout, key: String) -> CodecError {
    CodecError(
      code: .duplicateField,
      reason: "field \"\(field.name)\" is set more than once (as \"\(field.jsonName)\" and \"\(field.name)\")",
      path: [key])
  }

  private mutating func encodeField(
    _ field: FieldLayout, fieldIndex: Int, _ value: JSONValue, layout: MessageLayout, oneofMembers: inout [Int]
  ) throws(CodecError) {
    if case .null = value {
      // null means "default", except for google.protobuf.Value (and NullValue), where it is a value.
      guard !field.isRepeated, isNullable(field) else { return }
    }
    if oneofMembers.indices.contains(field.oneofIndex) {
      let other = oneofMembers[field.oneofIndex]
      if other >= 0 {
        throw .init(
          code: .duplicateField,
          reason:
            "oneof \"\(layout.oneofNames[field.oneofIndex])\" already has field \"\(layout.fields[other].jsonName)\" set"
        )
      }
      oneofMembers[field.oneofIndex] = fieldIndex
    }
    if field.isMap {
      try encodeMap(field, value)
    } else if field.isRepeated {
      guard case .array(let elements) = value else {
        throw .invalid("expected an array, got \(describe(value))")
      }
      try encodeRepeated(field, elements)
    } else {
      try encodeSingular(field, value, alwaysWrite: field.hasPresence)
    }
  }

  /// True for fields to which JSON null assigns a value (Value and NullValue).
  private func isNullable(_ field: FieldLayout) -> Bool {
    if field.kind == .message { return pool.messages[field.messageIndex].wellKnown == .value }
    if field.kind == .enumeration { return pool.enums[field.enumIndex].fullName == "google.protobuf.NullValue" }
    return false
  }

  /// Writes one value with its tag. `alwaysWrite` false skips a default scalar.
  private mutating func encodeSingular(_ field: FieldLayout, _ value: JSONValue, alwaysWrite: Bool) throws(CodecError) {
    switch field.kind {
    case .message:
      writer.appendTag(field.tag)
      let start = writer.beginLengthDelimited()
      try encodeMessage(value, messageIndex: field.messageIndex)
      writer.endLengthDelimited(start)
    case .group:
      writer.appendTag(field.tag)
      try encodeMessage(value, messageIndex: field.messageIndex)
      writer.appendVarint(tagValue(number: field.number, wireType: 4))
    default:
      let scalar = try self.scalar(value, field: field)
      guard alwaysWrite || !scalar.isDefault, !scalar.isSkipped else { return }
      writer.appendTag(field.tag)
      write(scalar)
    }
  }

  private mutating func encodeRepeated(_ field: FieldLayout, _ elements: [JSONValue]) throws(CodecError) {
    if elements.isEmpty { return }
    let allowsNull = field.kind == .message && pool.messages[field.messageIndex].wellKnown == .value
    if field.isPacked {
      writer.appendTag(field.packedTag)
      let start = writer.beginLengthDelimited()
      for (index, element) in elements.enumerated() {
        do throws(CodecError) {
          if case .null = element { throw .invalid("null is not allowed in a repeated field") }
          let scalar = try self.scalar(element, field: field)
          if !scalar.isSkipped { write(scalar) }
        } catch {
          throw error.prefixed("[\(index)]")
        }
      }
      writer.endLengthDelimited(start)
      return
    }
    for (index, element) in elements.enumerated() {
      do throws(CodecError) {
        if case .null = element, !allowsNull { throw .invalid("null is not allowed in a repeated field") }
        try encodeSingular(field, element, alwaysWrite: true)
      } catch {
        throw error.prefixed("[\(index)]")
      }
    }
  }

  private mutating func encodeMap(_ field: FieldLayout, _ value: JSONValue) throws(CodecError) {
    guard case .object(let object) = value else {
      throw .invalid("expected an object (map), got \(describe(value))")
    }
    let entry = pool.messages[field.messageIndex]
    let keyField = entry.fields[0]
    let valueField = entry.fields[1]
    let allowsNull = valueField.kind == .message && pool.messages[valueField.messageIndex].wellKnown == .value
    for member in object.members {
      do throws(CodecError) {
        let entryStart = writer.bytes.count
        writer.appendTag(field.tag)
        let start = writer.beginLengthDelimited()
        writer.appendTag(keyField.tag)
        write(try mapKey(member.key, kind: keyField.kind))
        if case .null = member.value, !allowsNull { throw .invalid("null is not allowed as a map value") }
        if valueField.kind == .message {
          try encodeSingular(valueField, member.value, alwaysWrite: true)
        } else {
          let scalar = try self.scalar(member.value, field: valueField)
          if scalar.isSkipped {
            writer.bytes.removeSubrange(entryStart...)
            continue
          }
          writer.appendTag(valueField.tag)
          write(scalar)
        }
        writer.endLengthDelimited(start)
      } catch {
        throw error.prefixed("[\(member.key)]")
      }
    }
  }

  private func mapKey(_ key: String, kind: FieldKind) throws(CodecError) -> ScalarValue {
    switch kind {
    case .string: return .string(key)
    case .bool:
      if key == "true" { return .varint(1) }
      if key == "false" { return .varint(0) }
      throw .invalid("expected a bool map key (\"true\" or \"false\"), got \"\(key)\"")
    default:
      return try integerScalar(.string(key), kind: kind)
    }
  }

  @inline(__always)
  mutating func write(_ scalar: ScalarValue) {
    switch scalar {
    case .varint(let value): writer.appendVarint(value)
    case .fixed32(let value): writer.appendFixed32(value)
    case .fixed64(let value): writer.appendFixed64(value)
    case .string(var text):
      text.withUTF8 { writer.appendLengthDelimited($0) }
    case .bytes(let data):
      data.withUnsafeBufferPointer { writer.appendLengthDelimited($0) }
    case .skipped: break
    }
  }
}

/// One scalar, ready for the wire.
enum ScalarValue {
  case varint(UInt64)
  case fixed32(UInt32)
  case fixed64(UInt64)
  case string(String)
  case bytes([UInt8])
  /// An unknown enum name, dropped because unknown fields are ignored.
  case skipped

  var isDefault: Bool {
    switch self {
    case .varint(let value), .fixed64(let value): value == 0
    case .fixed32(let value): value == 0
    case .string(let text): text.isEmpty
    case .bytes(let data): data.isEmpty
    case .skipped: true
    }
  }

  var isSkipped: Bool {
    if case .skipped = self { return true }
    return false
  }
}

/// A short rendering of a JSON value for error messages.
func describe(_ value: JSONValue) -> String {
  switch value {
  case .array: return "an array"
  case .object: return "an object"
  default:
    let text = value.serialized
    return text.count > 40 ? String(text.prefix(37)) + "..." : text
  }
}

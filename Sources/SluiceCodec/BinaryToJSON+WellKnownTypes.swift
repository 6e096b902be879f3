extension BinaryToJSON {
  /// Writes a well-known type in its special JSON form.
  mutating func writeWellKnown(
    _ wellKnown: WellKnownType, _ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, layout: MessageLayout
  ) throws(CodecError) {
    let entries = try scan(buffer, range, layout: layout)
    func last(_ number: Int32) -> WireEntry? {
      guard let index = layout.fieldIndex(number: number) else { return nil }
      return entries.last(where: { $0.field == Int32(index) })
    }
    func run(_ fieldIndex: Int) -> ArraySlice<WireEntry> {
      let start = entries.firstIndex(where: { $0.field == Int32(fieldIndex) }) ?? entries.endIndex
      var end = start
      while end < entries.endIndex && entries[end].field == Int32(fieldIndex) { end += 1 }
      return entries[start..<end]
    }
    switch wellKnown {
    case .timestamp, .duration:
      let seconds = Int64(bitPattern: last(1)?.value ?? 0)
      let nanos = Int32(truncatingIfNeeded: last(2)?.value ?? 0)
      let text =
        wellKnown == .timestamp
        ? WellKnownText.formatTimestamp(seconds: seconds, nanos: nanos)
        : WellKnownText.formatDuration(seconds: seconds, nanos: nanos)
      guard let text else {
        throw .invalid("\(layout.fullName) out of range (seconds \(seconds), nanos \(nanos))")
      }
      writer.writeString(text)
    case .fieldMask:
      var paths: [String] = []
      for entry in run(0) {
        let bytes = UnsafeBufferPointer(rebasing: buffer[entry.range])
        guard isValidUTF8(bytes) else { throw .wire("string field holds invalid UTF-8") }
        let path = String(decoding: bytes, as: UTF8.self)
        guard let camel = WellKnownText.camelCasePath(path) else {
          throw .invalid("field mask path \"\(path)\" has no JSON form")
        }
        paths.append(camel)
      }
      writer.writeString(paths.joined(separator: ","))
    case .structValue, .listValue:
      let values = run(0)
      if values.isEmpty {
        if wellKnown == .structValue { writer.appendLiteral("{}") } else { writer.appendLiteral("[]") }
      } else {
        try writeValue(layout.fields[0], values, buffer)
      }
    case .value:
      // The scan kept only the last oneof member, so at most one kind field remains.
      guard let entry = entries.last else {
        writer.appendLiteral("null")  // no kind set: null, as the reference implementation prints it
        return
      }
      let field = layout.fields[Int(entry.field)]
      switch field.number {
      case 1: writer.appendLiteral("null")
      case 2:
        let double = Double(bitPattern: entry.value)
        guard double.isFinite else {
          throw .invalid("google.protobuf.Value cannot hold \(double) (it would read back as a string)")
        }
        writer.writeDouble(double)
      default:
        try writeValue(field, run(Int(entry.field)), buffer)
      }
    case .any:
      try writeAny(last(1), last(2), buffer)
    case .empty:
      writer.appendLiteral("{}")
    default:  // wrappers
      let field = layout.fields[0]
      if let entry = entries.last { try writeScalar(field, entry, buffer) } else { writeDefault(field) }
    }
  }

  private mutating func writeAny(
    _ typeEntry: WireEntry?, _ valueEntry: WireEntry?, _ buffer: UnsafeBufferPointer<UInt8>
  ) throws(CodecError) {
    let typeBytes = typeEntry.map { UnsafeBufferPointer(rebasing: buffer[$0.range]) }
    guard let typeBytes, !typeBytes.isEmpty else {
      guard (valueEntry?.length ?? 0) == 0 else {
        throw .invalid("google.protobuf.Any has a value but no type URL")
      }
      writer.appendLiteral("{}")
      return
    }
    guard isValidUTF8(typeBytes) else { throw .wire("string field holds invalid UTF-8") }
    let typeURL = String(decoding: typeBytes, as: UTF8.self)
    guard let slash = typeURL.lastIndex(of: "/") else {
      throw CodecError(code: .invalidValue, reason: "invalid type URL \"\(typeURL)\"", path: ["@type"])
    }
    let typeName = String(typeURL[typeURL.index(after: slash)...])
    guard let messageIndex = pool.messageIndexByName[typeName] else {
      throw CodecError(code: .unknownType, reason: "type \"\(typeName)\" is not in the registry", path: ["@type"])
    }
    let valueRange = valueEntry?.range ?? 0..<0
    writer.appendLiteral("{\"@type\":")
    writer.writeString(utf8: typeBytes)
    let inner = pool.messages[messageIndex]
    if let wellKnown = inner.wellKnown, wellKnown != .empty {
      writer.appendLiteral(",\"value\":")
      try writeMessage(buffer, valueRange, messageIndex: messageIndex)
    } else {
      var first = false
      try writeFields(buffer, valueRange, layout: inner, first: &first)
    }
    writer.append(UInt8(ascii: "}"))
  }
}

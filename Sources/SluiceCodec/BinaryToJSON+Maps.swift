extension BinaryToJSON {
  /// Writes a map field as a JSON object; a later entry with the same key replaces an earlier one.
  mutating func writeMap(
    _ field: FieldLayout, _ run: ArraySlice<WireEntry>, _ buffer: UnsafeBufferPointer<UInt8>
  ) throws(CodecError) {
    let entryLayout = pool.messages[field.messageIndex]
    var pairs: [(key: [UInt8], value: ArraySlice<WireEntry>)] = []
    pairs.reserveCapacity(run.count)
    for entry in run {
      var skippedUnknown = false
      let inner = try scan(buffer, entry.range, layout: entryLayout, skippedUnknown: &skippedUnknown)
      // An entry with unknown fields is kept as an unknown field of the parent by protobuf
      // python (upb), so it is not part of the map.
      if skippedUnknown {
        for valueEntry in inner where valueEntry.field == 1 {
          try validate(buffer, valueEntry, field: entryLayout.fields[1])
        }
        continue
      }
      var split = 0
      while split < inner.count && inner[split].field == 0 { split += 1 }
      let key = try mapKeyText(entryLayout.fields[0], inner[..<split].last, buffer)
      pairs.append((key: key, value: inner[split...]))
    }
    if pairs.count > 1 {
      // A later entry with the same key replaces the earlier one.
      var lastIndex: [[UInt8]: Int] = [:]
      for (index, pair) in pairs.enumerated() { lastIndex[pair.key] = index }
      if lastIndex.count != pairs.count {
        for (index, pair) in pairs.enumerated() where lastIndex[pair.key] != index {
          for valueEntry in pair.value { try validate(buffer, valueEntry, field: entryLayout.fields[1]) }
        }
        pairs = pairs.enumerated().filter { lastIndex[$0.element.key] == $0.offset }.map(\.element)
      }
    }
    let valueField = entryLayout.fields[1]
    writer.append(UInt8(ascii: "{"))
    for (index, pair) in pairs.enumerated() {
      if index > 0 { writer.append(UInt8(ascii: ",")) }
      writer.append(pair.key)
      writer.append(UInt8(ascii: ":"))
      do throws(CodecError) {
        if pair.value.isEmpty {
          if valueField.kind == .message {
            try writeMessage(buffer, 0..<0, messageIndex: valueField.messageIndex)
          } else {
            writeDefault(valueField)
          }
        } else {
          try writeValue(valueField, pair.value, buffer)
        }
      } catch {
        throw error.prefixed("[\(String(decoding: pair.key.dropFirst().dropLast(), as: UTF8.self))]")
      }
    }
    writer.append(UInt8(ascii: "}"))
  }

  /// The quoted JSON object key of a map entry.
  private func mapKeyText(
    _ keyField: FieldLayout, _ entry: WireEntry?, _ buffer: UnsafeBufferPointer<UInt8>
  ) throws(CodecError) -> [UInt8] {
    var keyWriter = BinaryToJSON(pool: pool, options: options, maximumDepth: maximumDepth, capacity: 16)
    if let entry {
      try keyWriter.writeScalar(keyField, entry, buffer)
    } else {
      keyWriter.writeDefault(keyField)
    }
    var text = keyWriter.writer.bytes
    if text.first != UInt8(ascii: "\"") {  // numbers and bools become strings
      text.insert(UInt8(ascii: "\""), at: 0)
      text.append(UInt8(ascii: "\""))
    }
    return text
  }
}

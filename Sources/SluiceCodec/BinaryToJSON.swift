/// Writes the canonical proto3 JSON of protobuf binary data, straight from the wire bytes and
/// the descriptor layouts (no intermediate message objects).
///
/// Each message is scanned once into a list of field occurrences (unknown fields skipped,
/// every length checked), then written in field-number order: for singular fields the last
/// occurrence wins, singular messages merge their occurrences, a later oneof member clears
/// the earlier ones, packed and unpacked repeated encodings are both read. What a protobuf
/// parser would reject is rejected even where it is not printed (a replaced oneof member, an
/// earlier map entry, a proto3 string that a later occurrence replaces); an undeclared number
/// of a closed (proto2) enum is an unknown field, as in protobuf runtimes.
struct BinaryToJSON {
  let pool: DescriptorPool
  let options: JSONCodec.EncodingOptions
  let maximumDepth: Int
  var writer: JSONWriter
  var depth = 0

  init(pool: DescriptorPool, options: JSONCodec.EncodingOptions, maximumDepth: Int, capacity: Int) {
    self.pool = pool
    self.options = options
    self.maximumDepth = maximumDepth
    self.writer = JSONWriter(capacity: capacity)
  }

  /// One occurrence of a known field on the wire.
  struct WireEntry {
    /// Index of the field in its message layout.
    var field: Int32
    var wireType: UInt8
    /// The varint or fixed value, or the start of a length-delimited value.
    var value: UInt64
    /// The length of a length-delimited value.
    var length: Int

    var range: Range<Int> { Int(value)..<(Int(value) + length) }
  }

  /// Writes one message as a JSON value.
  mutating func writeMessage(
    _ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, messageIndex: Int
  ) throws(CodecError) {
    depth += 1
    defer { depth -= 1 }
    if depth > maximumDepth {
      throw CodecError(code: .tooDeep, reason: "protobuf binary nests deeper than \(maximumDepth)")
    }
    let layout = pool.messages[messageIndex]
    if let wellKnown = layout.wellKnown, wellKnown != .empty {
      try writeWellKnown(wellKnown, buffer, range, layout: layout)
      return
    }
    writer.append(UInt8(ascii: "{"))
    var first = true
    try writeFields(buffer, range, layout: layout, first: &first)
    writer.append(UInt8(ascii: "}"))
  }

  /// Reads the occurrences of a message's known fields, grouped by field in field order.
  mutating func scan(
    _ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, layout: MessageLayout
  ) throws(CodecError) -> [WireEntry] {
    var skippedUnknown = false
    return try scan(buffer, range, layout: layout, skippedUnknown: &skippedUnknown)
  }

  /// Same, telling whether unknown fields were skipped.
  mutating func scan(
    _ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, layout: MessageLayout, skippedUnknown: inout Bool
  ) throws(CodecError) -> [WireEntry] {
    var entries: [WireEntry] = []
    var reader = WireReader(buffer, range: range)
    var sorted = true
    var lastField: Int32 = -1
    let hasOneofs = !layout.oneofNames.isEmpty
    var oneofCurrent: [Int32] = hasOneofs ? Array(repeating: -1, count: layout.oneofNames.count) : []
    var oneofStart: [Int] = oneofCurrent.isEmpty ? [] : Array(repeating: 0, count: oneofCurrent.count)
    var oneofSwitched = false
    while !reader.isAtEnd {
      let (number, wireType) = try reader.readTag()
      if wireType == 4 { throw .wire("unexpected end-group tag") }
      guard let index = layout.fieldIndex(number: number) else {
        try reader.skip(wireType: wireType, number: number, depth: depth, maximumDepth: maximumDepth)
        skippedUnknown = true
        continue
      }
      let field = layout.fields[index]
      guard wireType == field.kind.wireType || (wireType == 2 && field.isRepeated && field.kind.isPackable) else {
        // A known number with the wrong wire type is an unknown field to protobuf parsers.
        try reader.skip(wireType: wireType, number: number, depth: depth, maximumDepth: maximumDepth)
        skippedUnknown = true
        continue
      }
      var entry = WireEntry(field: Int32(index), wireType: wireType, value: 0, length: 0)
      switch wireType {
      case 0:
        entry.value = try reader.readVarint()
        if field.kind == .enumeration && !isKnown(entry.value, enumIndex: field.enumIndex) {
          skippedUnknown = true  // a closed enum's undeclared number is an unknown field
          continue
        }
      case 1: entry.value = try reader.readFixed64()
      case 5: entry.value = UInt64(try reader.readFixed32())
      case 2:
        let content = try reader.readLengthDelimited()
        entry.value = UInt64(content.lowerBound)
        entry.length = content.count
        // Every occurrence is checked, even one a later occurrence replaces, as parsers do.
        if field.validatesUTF8 && !isValidUTF8(UnsafeBufferPointer(rebasing: buffer[content])) {
          throw .wire("string field \(field.name) holds invalid UTF-8")
        }
      default:  // 3: a group; its content ends before the end-group tag
        let start = reader.position
        try reader.skip(wireType: 3, number: number, depth: depth, maximumDepth: maximumDepth)
        let endTagLength = varintBytes(tagValue(number: number, wireType: 4)).count
        entry.value = UInt64(start)
        entry.length = reader.position - endTagLength - start
      }
      if Int32(index) < lastField { sorted = false }
      lastField = Int32(index)
      if oneofCurrent.indices.contains(field.oneofIndex) && oneofCurrent[field.oneofIndex] != Int32(index) {
        if oneofCurrent[field.oneofIndex] >= 0 { oneofSwitched = true }
        oneofCurrent[field.oneofIndex] = Int32(index)
        oneofStart[field.oneofIndex] = entries.count
      }
      entries.append(entry)
    }
    if oneofSwitched {
      // Setting a oneof member clears the others: keep only the last member's final run.
      var kept: [WireEntry] = []
      for (position, entry) in entries.enumerated() {
        let oneof = layout.fields[Int(entry.field)].oneofIndex
        if oneofCurrent.indices.contains(oneof)
          && (oneofCurrent[oneof] != entry.field || position < oneofStart[oneof])
        {
          try validate(buffer, entry, field: layout.fields[Int(entry.field)])
          continue
        }
        kept.append(entry)
      }
      entries = kept
    }
    if !sorted {
      entries = entries.enumerated().sorted { lhs, rhs in
        lhs.element.field != rhs.element.field ? lhs.element.field < rhs.element.field : lhs.offset < rhs.offset
      }.map(\.element)
    }
    return entries
  }

  /// False for a number a closed (proto2) enum does not declare.
  @inline(__always)
  func isKnown(_ value: UInt64, enumIndex: Int) -> Bool {
    let enumLayout = pool.enums[enumIndex]
    return !enumLayout.isClosed || enumLayout.namesByNumber[Int32(truncatingIfNeeded: value)] != nil
  }

  /// Writes the members of a message (no braces), each preceded by a comma unless `first`.
  mutating func writeFields(
    _ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, layout: MessageLayout, first: inout Bool
  ) throws(CodecError) {
    let entries = try scan(buffer, range, layout: layout)
    var cursor = 0
    for fieldIndex in layout.fields.indices {
      let runStart = cursor
      while cursor < entries.count && entries[cursor].field == Int32(fieldIndex) { cursor += 1 }
      let field = layout.fields[fieldIndex]
      if runStart == cursor {
        guard options.emitDefaultValues, !field.hasPresence else { continue }
        writeKey(field, first: &first)
        writeDefault(field)
        continue
      }
      if !options.emitDefaultValues && !field.hasPresence && !field.isRepeated {
        // An implicit-presence scalar that holds its default on the wire is not set.
        let last = entries[cursor - 1]
        if last.wireType == 2 ? last.length == 0 : last.value == 0 { continue }
      }
      writeKey(field, first: &first)
      do throws(CodecError) {
        try writeValue(field, entries[runStart..<cursor], buffer)
      } catch {
        throw error.prefixed(options.preserveProtoNames ? field.name : field.jsonName)
      }
    }
  }

  @inline(__always)
  private mutating func writeKey(_ field: FieldLayout, first: inout Bool) {
    if !first { writer.append(UInt8(ascii: ",")) }
    first = false
    writer.append(options.preserveProtoNames ? field.protoKey : field.jsonKey)
  }

  /// Writes the JSON value of a field from its (non-empty) run of occurrences.
  mutating func writeValue(
    _ field: FieldLayout, _ run: ArraySlice<WireEntry>, _ buffer: UnsafeBufferPointer<UInt8>
  ) throws(CodecError) {
    if field.isMap {
      try writeMap(field, run, buffer)
    } else if field.isRepeated {
      try writeRepeated(field, run, buffer)
    } else if field.kind == .message || field.kind == .group {
      try writeMerged(field, run, buffer)
    } else {
      try writeScalar(field, run[run.endIndex - 1], buffer)
    }
  }

  /// A singular message: occurrences merge, which for wire data means concatenation.
  mutating func writeMerged(
    _ field: FieldLayout, _ run: ArraySlice<WireEntry>, _ buffer: UnsafeBufferPointer<UInt8>
  ) throws(CodecError) {
    if run.count == 1 {
      try writeMessage(buffer, run[run.startIndex].range, messageIndex: field.messageIndex)
      return
    }
    var merged: [UInt8] = []
    for entry in run {
      // Each occurrence must be well-formed by itself: concatenation could complete a truncated one.
      try validate(buffer, entry, field: field)
      merged.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[entry.range]))
    }
    try merged.withUnsafeBufferPointer { (mergedBuffer) throws(CodecError) in
      try writeMessage(mergedBuffer, 0..<mergedBuffer.count, messageIndex: field.messageIndex)
    }
  }

  private mutating func writeRepeated(
    _ field: FieldLayout, _ run: ArraySlice<WireEntry>, _ buffer: UnsafeBufferPointer<UInt8>
  ) throws(CodecError) {
    writer.append(UInt8(ascii: "["))
    var first = true
    for entry in run {
      if entry.wireType == 2 && field.kind.isPackable {
        var reader = WireReader(buffer, range: entry.range)
        while !reader.isAtEnd {
          var value = WireEntry(field: entry.field, wireType: field.kind.wireType, value: 0, length: 0)
          switch field.kind.wireType {
          case 0: value.value = try reader.readVarint()
          case 1: value.value = try reader.readFixed64()
          default: value.value = UInt64(try reader.readFixed32())
          }
          if field.kind == .enumeration && !isKnown(value.value, enumIndex: field.enumIndex) { continue }
          if !first { writer.append(UInt8(ascii: ",")) }
          first = false
          try writeScalar(field, value, buffer)
        }
        continue
      }
      if !first { writer.append(UInt8(ascii: ",")) }
      first = false
      if field.kind == .message || field.kind == .group {
        try writeMessage(buffer, entry.range, messageIndex: field.messageIndex)
      } else {
        try writeScalar(field, entry, buffer)
      }
    }
    writer.append(UInt8(ascii: "]"))
  }
}

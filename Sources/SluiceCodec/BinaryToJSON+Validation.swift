extension BinaryToJSON {
  /// Checks an occurrence that is parsed but not printed (a replaced oneof member, a map
  /// entry replaced by a later one with the same key): protobuf parsers reject the whole
  /// input when such data is malformed, so the codec does too.
  mutating func validate(
    _ buffer: UnsafeBufferPointer<UInt8>, _ entry: WireEntry, field: FieldLayout
  ) throws(CodecError) {
    guard field.kind == .message || field.kind == .group else { return }  // scalars: checked by scan
    try validateMessage(buffer, entry.range, messageIndex: field.messageIndex)
  }

  private mutating func validateMessage(
    _ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, messageIndex: Int
  ) throws(CodecError) {
    depth += 1
    defer { depth -= 1 }
    if depth > maximumDepth {
      throw CodecError(code: .tooDeep, reason: "protobuf binary nests deeper than \(maximumDepth)")
    }
    let layout = pool.messages[messageIndex]
    for entry in try scan(buffer, range, layout: layout) {
      let field = layout.fields[Int(entry.field)]
      if field.kind == .message || field.kind == .group {
        try validateMessage(buffer, entry.range, messageIndex: field.messageIndex)
      }
    }
  }
}

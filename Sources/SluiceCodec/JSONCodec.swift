/// Translates between proto3 canonical JSON and protobuf binary, driven by descriptors.
///
/// This is hand-written on purpose: SwiftProtobuf's JSON needs compiled message types and
/// cannot emit default values, and no available Swift library transcodes from descriptors.
/// The gateway must handle any message of a loaded FileDescriptorSet, so the codec walks the
/// descriptor layouts directly: JSON text → ``JSONValue`` → wire bytes, and wire bytes → JSON
/// text, with no intermediate message objects.
///
/// The mapping follows https://protobuf.dev/programming-guides/json/ and matches protobuf
/// python's `json_format` with `always_print_fields_with_no_presence=True` (checked by the
/// differential tests). A codec is an immutable value: share one across tasks.
public struct JSONCodec: Sendable {
  /// How binary is turned into JSON.
  public struct EncodingOptions: Sendable, Hashable {
    /// Emit fields that hold their default value (`"value":0`, `"name":""`, `[]`, `{}`).
    /// Unset message fields, `optional` fields and oneof members are never emitted.
    public var emitDefaultValues: Bool
    /// Use the .proto field names instead of lowerCamelCase JSON names.
    public var preserveProtoNames: Bool
    /// Write enum values as numbers instead of names.
    public var enumsAsIntegers: Bool

    /// Creates output options; the defaults are the gateway's wire contract.
    public init(emitDefaultValues: Bool = true, preserveProtoNames: Bool = false, enumsAsIntegers: Bool = false) {
      self.emitDefaultValues = emitDefaultValues
      self.preserveProtoNames = preserveProtoNames
      self.enumsAsIntegers = enumsAsIntegers
    }
  }

  /// How JSON is read and turned into binary.
  public struct DecodingOptions: Sendable, Hashable {
    /// Skip object members that name no field (and enum names that name no value)
    /// instead of failing with ``CodecError/Code/unknownField``.
    public var ignoreUnknownFields: Bool
    /// The deepest nesting of JSON arrays/objects (and of binary messages) accepted.
    public var maximumDepth: Int
    /// The largest JSON text accepted, in bytes.
    public var maximumBytes: Int

    /// Creates input options.
    public init(ignoreUnknownFields: Bool = false, maximumDepth: Int = 100, maximumBytes: Int = 4 << 20) {
      self.ignoreUnknownFields = ignoreUnknownFields
      self.maximumDepth = maximumDepth
      self.maximumBytes = maximumBytes
    }
  }

  /// The descriptors the codec resolves message types with.
  public let registry: DescriptorRegistry
  /// Output options.
  public let encoding: EncodingOptions
  /// Input options.
  public let decoding: DecodingOptions

  /// Creates a codec.
  /// - Parameters:
  ///   - registry: The message types (and the types `google.protobuf.Any` may hold).
  ///   - encoding: Options for binary → JSON.
  ///   - decoding: Options for JSON → binary.
  public init(registry: DescriptorRegistry, encoding: EncodingOptions = .init(), decoding: DecodingOptions = .init()) {
    self.registry = registry
    self.encoding = encoding
    self.decoding = decoding
  }

  // MARK: JSON → binary

  /// Parses JSON text into a ``JSONValue``, enforcing the size and depth limits.
  /// - Parameter json: UTF-8 JSON text.
  /// - Throws: ``CodecError`` (`malformedJSON`, `tooLarge`, `tooDeep`).
  public func parseJSON(_ json: UnsafeRawBufferPointer) throws(CodecError) -> JSONValue {
    guard json.count <= decoding.maximumBytes else {
      throw CodecError(code: .tooLarge, reason: "JSON text exceeds the limit of \(decoding.maximumBytes) bytes")
    }
    return try JSONReader.parse(json.assumingMemoryBound(to: UInt8.self), maximumDepth: decoding.maximumDepth)
  }

  /// Parses JSON text into a ``JSONValue``, enforcing the size and depth limits.
  /// - Parameter json: UTF-8 JSON text.
  public func parseJSON(_ json: [UInt8]) throws(CodecError) -> JSONValue {
    try json.withUnsafeBufferPointer { (bytes) throws(CodecError) in try parseJSON(UnsafeRawBufferPointer(bytes)) }
  }

  /// Parses JSON text into a ``JSONValue``, enforcing the size and depth limits.
  /// - Parameter json: UTF-8 JSON text (copied first when it is not contiguous).
  @inlinable  // specialized in the caller: a generic call across modules is twice as slow
  public func parseJSON(_ json: some Collection<UInt8>) throws(CodecError) -> JSONValue {
    try withContiguousBytes(json) { (bytes) throws(CodecError) in try parseJSON(UnsafeRawBufferPointer(bytes)) }
  }

  /// Parses JSON text into a ``JSONValue``, enforcing the size and depth limits.
  /// - Parameter json: JSON text.
  public func parseJSON(_ json: String) throws(CodecError) -> JSONValue {
    var json = json
    return try json.withUTF8 { bytes in
      Result { () throws(CodecError) in try parseJSON(UnsafeRawBufferPointer(bytes)) }
    }.get()
  }

  /// Encodes a parsed JSON value as a message's protobuf binary.
  /// - Parameters:
  ///   - value: A JSON value (normally an object) in the message's JSON form.
  ///   - message: The message type.
  /// - Returns: The serialized message.
  public func binary(from value: JSONValue, as message: MessageDescriptor) throws(CodecError) -> [UInt8] {
    var encoder = JSONToBinary(
      pool: message.pool, ignoreUnknownFields: decoding.ignoreUnknownFields,
      maximumDepth: decoding.maximumDepth, capacity: 64)
    try encoder.encodeMessage(value, messageIndex: message.index)
    return encoder.writer.bytes
  }

  /// Translates JSON text into a message's protobuf binary.
  /// - Parameters:
  ///   - json: UTF-8 JSON text.
  ///   - message: The message type.
  /// - Returns: The serialized message.
  public func binary(fromJSON json: UnsafeRawBufferPointer, as message: MessageDescriptor) throws(CodecError) -> [UInt8]
  {
    try binary(from: parseJSON(json), as: message)
  }

  /// Translates JSON text into a message's protobuf binary.
  public func binary(fromJSON json: [UInt8], as message: MessageDescriptor) throws(CodecError) -> [UInt8] {
    try binary(from: parseJSON(json), as: message)
  }

  /// Translates JSON text into a message's protobuf binary (copied first when not contiguous).
  @inlinable  // specialized in the caller: a generic call across modules is twice as slow
  public func binary(fromJSON json: some Collection<UInt8>, as message: MessageDescriptor) throws(CodecError) -> [UInt8]
  {
    try binary(from: parseJSON(json), as: message)
  }

  /// Translates JSON text into a message's protobuf binary.
  public func binary(fromJSON json: String, as message: MessageDescriptor) throws(CodecError) -> [UInt8] {
    try binary(from: parseJSON(json), as: message)
  }

  // MARK: binary → JSON

  /// Translates a message's protobuf binary into JSON text (UTF-8, compact).
  ///
  /// Unknown fields are skipped; truncated or malformed wire data is an error.
  /// - Parameters:
  ///   - bytes: The serialized message.
  ///   - message: The message type.
  /// - Returns: UTF-8 JSON text.
  public func json(fromBinary bytes: UnsafeRawBufferPointer, as message: MessageDescriptor) throws(CodecError)
    -> [UInt8]
  {
    let buffer = bytes.assumingMemoryBound(to: UInt8.self)
    var decoder = BinaryToJSON(
      pool: message.pool, options: encoding, maximumDepth: decoding.maximumDepth, capacity: 32 + buffer.count * 2)
    try decoder.writeMessage(buffer, 0..<buffer.count, messageIndex: message.index)
    return decoder.writer.bytes
  }

  /// Translates a message's protobuf binary into JSON text (UTF-8, compact).
  public func json(fromBinary bytes: [UInt8], as message: MessageDescriptor) throws(CodecError) -> [UInt8] {
    try bytes.withUnsafeBufferPointer { (buffer) throws(CodecError) in
      try json(fromBinary: UnsafeRawBufferPointer(buffer), as: message)
    }
  }

  /// Translates a message's protobuf binary into JSON text (copied first when not contiguous).
  @inlinable  // specialized in the caller: a generic call across modules is twice as slow
  public func json(fromBinary bytes: some Collection<UInt8>, as message: MessageDescriptor) throws(CodecError)
    -> [UInt8]
  {
    try withContiguousBytes(bytes) { (buffer) throws(CodecError) in
      try json(fromBinary: UnsafeRawBufferPointer(buffer), as: message)
    }
  }

  /// Appends the JSON text of a message's protobuf binary to `output` (e.g. an NDJSON body).
  ///
  /// On error, `output` is left as it was.
  /// - Parameters:
  ///   - bytes: The serialized message.
  ///   - message: The message type.
  ///   - output: The buffer to append UTF-8 JSON text to.
  public func appendJSON(
    fromBinary bytes: UnsafeRawBufferPointer, as message: MessageDescriptor, to output: inout [UInt8]
  ) throws(CodecError) {
    let buffer = bytes.assumingMemoryBound(to: UInt8.self)
    let originalCount = output.count
    var decoder = BinaryToJSON(pool: message.pool, options: encoding, maximumDepth: decoding.maximumDepth, capacity: 0)
    output.reserveCapacity(originalCount + 32 + buffer.count * 2)
    swap(&decoder.writer.bytes, &output)  // write in place, without copying the buffer
    defer { swap(&decoder.writer.bytes, &output) }
    do {
      try decoder.writeMessage(buffer, 0..<buffer.count, messageIndex: message.index)
    } catch {
      decoder.writer.bytes.removeSubrange(originalCount...)
      throw error
    }
  }

  /// Appends the JSON text of a message's protobuf binary to `output`.
  public func appendJSON(fromBinary bytes: [UInt8], as message: MessageDescriptor, to output: inout [UInt8])
    throws(CodecError)
  {
    try bytes.withUnsafeBufferPointer { (buffer) throws(CodecError) in
      try appendJSON(fromBinary: UnsafeRawBufferPointer(buffer), as: message, to: &output)
    }
  }

  /// Translates a message's protobuf binary into a JSON string.
  public func jsonString(fromBinary bytes: [UInt8], as message: MessageDescriptor) throws(CodecError) -> String {
    String(decoding: try json(fromBinary: bytes, as: message), as: UTF8.self)
  }
}

/// Runs `body` over the bytes of `collection`, copying only when it is not contiguous.
@inlinable
func withContiguousBytes<Result>(
  _ collection: some Collection<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) throws(CodecError) -> Result
) throws(CodecError) -> Result {
  let outcome: Swift.Result<Result, CodecError>? = collection.withContiguousStorageIfAvailable { bytes in
    Swift.Result { () throws(CodecError) in try body(bytes) }
  }
  if let outcome { return try outcome.get() }
  let copy = Array(collection)
  return try copy.withUnsafeBufferPointer { bytes in
    Swift.Result { () throws(CodecError) in try body(bytes) }
  }.get()
}

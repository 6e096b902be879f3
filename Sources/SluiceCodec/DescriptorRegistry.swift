public import SwiftProtobuf

/// The services, methods and message types of a serialized `google.protobuf.FileDescriptorSet`.
///
/// Build it once at startup (it precomputes every message's field tables) and share it: it is
/// immutable and `Sendable`. The set must include its imports (`protoc --include_imports`).
public struct DescriptorRegistry: Sendable {
  let pool: DescriptorPool
  /// Every method of every service, sorted by ``MethodDescriptor/path``.
  public let methods: [MethodDescriptor]
  /// The files of the set, each once (the first set's, for a name more than one holds), as they
  /// were given: for server reflection, which sends them back, and for printing them as source.
  public let files: [Google_Protobuf_FileDescriptorProto]
  private let methodsByPath: [String: MethodDescriptor]

  /// Loads a serialized FileDescriptorSet, checking it whole first: descriptors are untrusted
  /// input (server reflection, `--descriptor-set` files).
  /// - Parameter fileDescriptorSet: The bytes of a `google.protobuf.FileDescriptorSet`.
  /// - Throws: ``CodecError`` with code `unknownType` when a referenced type is missing from the
  ///   set, or `invalidDescriptor` when the bytes do not parse or describe something protobuf does
  ///   not allow (a field number outside 1...536870911 or in 19000...19999, an out-of-range
  ///   oneof index, a duplicate field, a malformed map entry or name, types nested deeper than
  ///   64 levels, ...). The message names the file, the type and the field:
  ///   `descriptor set: file "x.proto": message "pkg.M" field "f": number 0 is outside 1...536870911`.
  public init(fileDescriptorSet: [UInt8]) throws(CodecError) {
    try self.init(fileDescriptorSets: [fileDescriptorSet])
  }

  /// Loads several serialized FileDescriptorSets as one: a file (by name) that more than one set
  /// holds is taken from the first.
  /// - Parameter fileDescriptorSets: The bytes of each `google.protobuf.FileDescriptorSet`.
  /// - Throws: ``CodecError`` as ``init(fileDescriptorSet:)`` does, for any of them.
  public init(fileDescriptorSets: [[UInt8]]) throws(CodecError) {
    var files: [Google_Protobuf_FileDescriptorProto] = []
    var names: Set<String> = []
    for bytes in fileDescriptorSets {
      let set: Google_Protobuf_FileDescriptorSet
      do {
        set = try Google_Protobuf_FileDescriptorSet(serializedBytes: bytes)
      } catch {
        throw CodecError(code: .invalidDescriptor, reason: "the FileDescriptorSet does not parse: \(error)")
      }
      for file in set.file where names.insert(file.name).inserted { files.append(file) }
    }
    try self.init(files: files)
  }

  private init(files: [Google_Protobuf_FileDescriptorProto]) throws(CodecError) {
    try DescriptorValidator.validate(files)
    var set = Google_Protobuf_FileDescriptorSet()
    set.file = files
    let pool = try DescriptorPoolBuilder(files: set.file).build()
    self.pool = pool
    self.files = files
    var methods: [MethodDescriptor] = []
    for file in set.file {
      let prefix = file.package.isEmpty ? "" : file.package + "."
      for service in file.service {
        let serviceName = prefix + service.name
        for method in service.method {
          guard let input = pool.messageIndexByName[String(method.inputType.drop(while: { $0 == "." }))],
            let output = pool.messageIndexByName[String(method.outputType.drop(while: { $0 == "." }))]
          else {
            throw CodecError(
              code: .unknownType, reason: "a type of method \(serviceName).\(method.name) is not in the set")
          }
          let kind: MethodKind =
            switch (method.clientStreaming, method.serverStreaming) {
            case (false, false): .unary
            case (false, true): .serverStreaming
            case (true, false): .clientStreaming
            case (true, true): .bidirectionalStreaming
            }
          let httpRules: [HTTPRule]
          do {
            httpRules = try HTTPRule.rules(in: method.options)
          } catch {
            throw CodecError(
              code: .invalidDescriptor,
              reason: "file \"\(file.name)\": method \(serviceName).\(method.name): \(error.reason)")
          }
          methods.append(
            MethodDescriptor(
              path: "/\(serviceName)/\(method.name)", serviceName: serviceName, methodName: method.name,
              kind: kind, input: MessageDescriptor(pool: pool, index: input),
              output: MessageDescriptor(pool: pool, index: output),
              hasNoSideEffects: method.options.idempotencyLevel == .noSideEffects, httpRules: httpRules))
        }
      }
    }
    methods.sort { $0.path < $1.path }
    self.methods = methods
    self.methodsByPath = Dictionary(methods.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
  }

  /// The method at a gRPC path.
  /// - Parameter path: `/<package>.<Service>/<Method>`, e.g. `/proto.StreamService/List`.
  /// - Returns: The method, or `nil` when no service of the set has it.
  public func method(path: String) -> MethodDescriptor? {
    methodsByPath[path]
  }

  /// A message type by its full name.
  /// - Parameter fullName: The package-qualified name, e.g. `proto.StreamRequest` (no leading dot).
  /// - Returns: The message, or `nil` when the set has no such type.
  public func message(fullName: String) -> MessageDescriptor? {
    pool.messageIndexByName[fullName].map { MessageDescriptor(pool: pool, index: $0) }
  }

  /// The full names of every message type of the set, sorted.
  public var messageNames: [String] {
    pool.messages.map(\.fullName).sorted()
  }
}

/// How many messages each side of a method sends.
public enum MethodKind: Sendable, Hashable {
  /// One request, one response.
  case unary
  /// One request, a stream of responses.
  case serverStreaming
  /// A stream of requests, one response.
  case clientStreaming
  /// A stream in each direction.
  case bidirectionalStreaming

  /// True when the client sends a stream of messages.
  public var clientStreams: Bool { self == .clientStreaming || self == .bidirectionalStreaming }
  /// True when the server sends a stream of messages.
  public var serverStreams: Bool { self == .serverStreaming || self == .bidirectionalStreaming }
}

/// One RPC method of a service in a ``DescriptorRegistry``.
public struct MethodDescriptor: Sendable {
  /// The gRPC path, `/<package>.<Service>/<Method>` (`/DataService/BidirectionalStream` without package).
  public var path: String
  /// The service's full name, e.g. `proto.StreamService`.
  public var serviceName: String
  /// The method's name, e.g. `List`.
  public var methodName: String
  /// Which sides stream.
  public var kind: MethodKind
  /// The request message type.
  public var input: MessageDescriptor
  /// The response message type.
  public var output: MessageDescriptor
  /// Whether the method's options say `idempotency_level = NO_SIDE_EFFECTS` (it may be called with
  /// an HTTP GET, as Connect allows).
  public var hasNoSideEffects: Bool = false
  /// The method's REST mappings (`google.api.http` and its `additional_bindings`), as declared;
  /// their templates are checked by whoever serves them.
  public var httpRules: [HTTPRule] = []
}

/// A message type of a ``DescriptorRegistry``: a handle on its precomputed layout.
public struct MessageDescriptor: Sendable, Hashable, CustomStringConvertible {
  let pool: DescriptorPool
  let index: Int

  init(pool: DescriptorPool, index: Int) {
    self.pool = pool
    self.index = index
  }

  var layout: MessageLayout { pool.messages[index] }

  /// The package-qualified name, e.g. `proto.StreamRequest`.
  public var fullName: String { layout.fullName }

  /// The field names (as in the .proto file), in field-number order.
  public var fieldNames: [String] { layout.fields.map(\.name) }

  /// The full name.
  public var description: String { fullName }

  /// A field by its proto name (`book_id`) or JSON name (`bookId`), or nil.
  public func field(named name: String) -> FieldDescriptor? {
    layout.fieldIndex(name: name).map { FieldDescriptor(layout: layout.fields[$0], pool: pool) }
  }

  /// Every field, in field-number order.
  public var fields: [FieldDescriptor] {
    layout.fields.map { FieldDescriptor(layout: $0, pool: pool) }
  }

  /// A map field's entry type (its `key` and `value` fields).
  public var isMapEntry: Bool { layout.isMapEntry }

  /// Equal when both denote the same type of the same registry.
  public static func == (lhs: MessageDescriptor, rhs: MessageDescriptor) -> Bool {
    lhs.pool === rhs.pool && lhs.index == rhs.index
  }

  /// Hashes the registry identity and the type.
  public func hash(into hasher: inout Hasher) {
    hasher.combine(ObjectIdentifier(pool))
    hasher.combine(index)
  }
}

/// A field of a ``MessageDescriptor``: what another shape of a request (a REST path's variables,
/// its query parameters) needs to set it as JSON.
public struct FieldDescriptor: Sendable {
  /// How the field's value is written in JSON.
  public enum Kind: Sendable, Hashable {
    /// `true` / `false`.
    case bool
    /// An enum: its value's name, or its number.
    case enumeration
    /// A number (any integer or floating-point kind; 64-bit ones also as strings).
    case number
    /// A string.
    case string
    /// Bytes, as base64.
    case bytes
    /// A message: an object, or a string for the well-known types written as strings.
    case message
  }

  /// The name in the .proto file.
  public let name: String
  /// The JSON name (lowerCamelCase unless `json_name` says otherwise).
  public let jsonName: String
  public let kind: Kind
  /// A repeated field that is not a map.
  public let isRepeated: Bool
  public let isMap: Bool
  /// The field's message type (for `.message`).
  public let message: MessageDescriptor?
  /// A message type whose JSON form is a string or a number (Timestamp, Duration, FieldMask, the
  /// wrappers): it can be set from one text value.
  public let isScalarWellKnownType: Bool
  /// The kind as the .proto file names it: `int32`, `int64`, `double`, `string`, `enum`, `message`…
  public let protoKind: String
  /// An enum field's value names, in declaration order by number.
  public let enumValues: [String]

  init(layout field: FieldLayout, pool: DescriptorPool) {
    self.name = field.name
    self.jsonName = field.jsonName
    self.protoKind = field.kind.protoName
    if field.enumIndex >= 0, pool.enums.indices.contains(field.enumIndex) {
      let names = pool.enums[field.enumIndex].namesByNumber
      self.enumValues = names.keys.sorted().compactMap { names[$0] }
    } else {
      self.enumValues = []
    }
    self.isRepeated = field.isRepeated && !field.isMap
    self.isMap = field.isMap
    switch field.kind {
    case .bool: self.kind = .bool
    case .enumeration: self.kind = .enumeration
    case .string: self.kind = .string
    case .bytes: self.kind = .bytes
    case .message, .group: self.kind = .message
    case .double, .float, .int64, .uint64, .int32, .fixed64, .fixed32, .uint32, .sfixed32, .sfixed64, .sint32, .sint64:
      self.kind = .number
    }
    let message = field.messageIndex >= 0 ? MessageDescriptor(pool: pool, index: field.messageIndex) : nil
    self.message = message
    switch message?.layout.wellKnown {
    case .timestamp?, .duration?, .fieldMask?, .doubleValue?, .floatValue?, .int64Value?, .uint64Value?,
      .int32Value?, .uint32Value?, .boolValue?, .stringValue?, .bytesValue?:
      self.isScalarWellKnownType = true
    default:
      self.isScalarWellKnownType = false
    }
  }
}

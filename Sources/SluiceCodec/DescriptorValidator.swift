internal import SwiftProtobuf

/// Checks the files of a FileDescriptorSet before the codec's pool is built from them.
///
/// Descriptors are untrusted input: they come from upstreams' server reflection and from
/// `--descriptor-set` files. Everything the codec later derives from them (number tables, tags,
/// oneof slots, map entries, `"key":` bytes, type links) is checked here once, much as protoc's
/// `DescriptorBuilder` checks a .proto file, so that a bad set is refused whole with an error
/// naming the file, the message and the field, and the caller keeps the descriptors it had.
///
/// Extensions are checked for their names and numbers only: the codec does not use them, and
/// reflection may leave out the files that declare what they extend.
struct DescriptorValidator {
  /// The field numbers protobuf allows: a tag is the number and a 3-bit wire type in 32 bits.
  static let fieldNumbers: ClosedRange<Int32> = 1...536_870_911
  /// Field numbers reserved for the protobuf implementation.
  static let reservedFieldNumbers: ClosedRange<Int32> = 19_000...19_999
  /// The deepest nesting of message declarations (`message A { message B { ... } }`). Loading and
  /// printing a set recurse once per level; real protos nest a few levels, and SwiftProtobuf's
  /// parser stops a set at about 97 anyway (its limit of 100 nested messages, counting the set).
  static let maximumNesting = 64

  private typealias FileProto = Google_Protobuf_FileDescriptorProto
  private typealias MessageProto = Google_Protobuf_DescriptorProto
  private typealias FieldProto = Google_Protobuf_FieldDescriptorProto
  private typealias EnumProto = Google_Protobuf_EnumDescriptorProto

  /// Every message type by full name; the first declaration wins, as in `DescriptorPoolBuilder`.
  private var messages: [String: MessageProto] = [:]
  private var enums: Set<String> = []

  /// Checks `files` (each file name once) as one set.
  /// - Throws: ``CodecError`` with code `unknownType` for a type name the set does not declare,
  ///   else `invalidDescriptor`; its message names the file, the type and the field.
  static func validate(_ files: [Google_Protobuf_FileDescriptorProto]) throws(CodecError) {
    var validator = DescriptorValidator()
    for file in files { try validator.declare(file) }
    for file in files { try validator.check(file) }
  }

  // MARK: - Declarations: names, nesting, and the types fields may refer to

  private mutating func declare(_ file: FileProto) throws(CodecError) {
    guard !file.name.isEmpty else { throw Self.failure(file, nil, "the file has no name") }
    guard file.package.isEmpty || Self.isQualifiedIdentifier(file.package) else {
      throw Self.failure(file, "package \(Self.quote(file.package))", "the name is not a dotted identifier")
    }
    let prefix = file.package.isEmpty ? "" : file.package + "."
    var declared: Set<String> = []
    for message in file.messageType {
      try declare(message, prefix: prefix, depth: 1, in: file, declared: &declared)
    }
    for value in file.enumType { try declare(value, prefix: prefix, in: file, declared: &declared) }
  }

  private mutating func declare(
    _ message: MessageProto, prefix: String, depth: Int, in file: FileProto, declared: inout Set<String>
  ) throws(CodecError) {
    let fullName = prefix + message.name
    let subject = "message \(Self.quote(fullName))"
    guard Self.isIdentifier(message.name) else { throw Self.failure(file, subject, "the name is not an identifier") }
    guard depth <= Self.maximumNesting else {
      throw Self.failure(file, subject, "message declarations nest deeper than \(Self.maximumNesting) levels")
    }
    guard declared.insert(fullName).inserted else { throw Self.failure(file, subject, "the file declares it twice") }
    if self.messages[fullName] == nil { self.messages[fullName] = message }
    for nested in message.nestedType {
      try declare(nested, prefix: fullName + ".", depth: depth + 1, in: file, declared: &declared)
    }
    for nested in message.enumType { try declare(nested, prefix: fullName + ".", in: file, declared: &declared) }
  }

  private mutating func declare(
    _ value: EnumProto, prefix: String, in file: FileProto, declared: inout Set<String>
  ) throws(CodecError) {
    let fullName = prefix + value.name
    let subject = "enum \(Self.quote(fullName))"
    guard Self.isIdentifier(value.name) else { throw Self.failure(file, subject, "the name is not an identifier") }
    guard declared.insert(fullName).inserted else { throw Self.failure(file, subject, "the file declares it twice") }
    self.enums.insert(fullName)
  }

  // MARK: - Contents

  private func check(_ file: FileProto) throws(CodecError) {
    let prefix = file.package.isEmpty ? "" : file.package + "."
    let isProto3 = file.syntax == "proto3"
    for message in file.messageType { try check(message, fullName: prefix + message.name, isProto3, in: file) }
    for value in file.enumType { try check(value, fullName: prefix + value.name, in: file) }
    for field in file.extension { try checkExtension(field, scope: file.package, in: file) }
    for service in file.service {
      let serviceName = prefix + service.name
      let subject = "service \(Self.quote(serviceName))"
      guard Self.isIdentifier(service.name) else { throw Self.failure(file, subject, "the name is not an identifier") }
      var methodNames: Set<String> = []
      for method in service.method {
        let methodSubject = "\(subject) method \(Self.quote(method.name))"
        guard Self.isIdentifier(method.name) else {
          throw Self.failure(file, methodSubject, "the name is not an identifier")
        }
        guard methodNames.insert(method.name).inserted else {
          throw Self.failure(file, methodSubject, "the service declares it twice")
        }
        for (role, typeName) in [("input", method.inputType), ("output", method.outputType)]
        where self.messages[Self.resolvable(typeName)] == nil {
          throw Self.failure(
            file, methodSubject, "\(role) type \(Self.quote(typeName)) is not a message of the set", code: .unknownType)
        }
      }
    }
  }

  private func check(_ message: MessageProto, fullName: String, _ isProto3: Bool, in file: FileProto) throws(CodecError)
  {
    let subject = "message \(Self.quote(fullName))"
    var oneofNames: Set<String> = []
    for oneof in message.oneofDecl {
      let oneofSubject = "\(subject) oneof \(Self.quote(oneof.name))"
      guard Self.isIdentifier(oneof.name) else {
        throw Self.failure(file, oneofSubject, "the name is not an identifier")
      }
      guard oneofNames.insert(oneof.name).inserted else {
        throw Self.failure(file, oneofSubject, "the message declares it twice")
      }
    }
    var numbers: [Int32: String] = [:]
    var names: Set<String> = []
    var jsonKeys: [String: String] = [:]  // proto3: JSON name and proto name → field name
    var oneofMembers = [Int](repeating: 0, count: message.oneofDecl.count)
    for field in message.field {
      let fieldSubject = "\(subject) field \(Self.quote(field.name))"
      try checkNameAndNumber(field, fieldSubject, in: file)
      try checkType(field, fieldSubject, in: file)
      guard names.insert(field.name).inserted else {
        throw Self.failure(file, fieldSubject, "the message declares the name twice")
      }
      if let other = numbers.updateValue(field.name, forKey: field.number) {
        throw Self.failure(
          file, fieldSubject, "number \(field.number) is also the number of field \(Self.quote(other))")
      }
      if field.hasOneofIndex {
        let index = Int(field.oneofIndex)
        guard oneofMembers.indices.contains(index) else {
          let problem =
            oneofMembers.isEmpty ? "but the message declares no oneof" : "is not in 0..<\(oneofMembers.count)"
          throw Self.failure(file, fieldSubject, "oneof_index \(field.oneofIndex) \(problem)")
        }
        guard field.label != .repeated else {
          throw Self.failure(file, fieldSubject, "a repeated field cannot be a member of a oneof")
        }
        oneofMembers[index] += 1
      }
      if field.type == .message || !field.hasType, let entry = self.messages[Self.resolvable(field.typeName)],
        entry.options.mapEntry, field.label != .repeated
      {
        throw Self.failure(file, fieldSubject, "map entry type \(Self.quote(field.typeName)) needs a repeated field")
      }
      if isProto3 {
        // As protoc does for proto3: a JSON key must name one field only.
        let jsonName = field.hasJsonName ? field.jsonName : DescriptorPoolBuilder.lowerCamelCase(field.name)
        for key in Set([field.name, jsonName]) {
          if let other = jsonKeys.updateValue(field.name, forKey: key) {
            throw Self.failure(file, fieldSubject, "JSON name \(Self.quote(key)) also names field \(Self.quote(other))")
          }
        }
      }
    }
    if let empty = oneofMembers.firstIndex(of: 0) {
      throw Self.failure(file, "\(subject) oneof \(Self.quote(message.oneofDecl[empty].name))", "it has no fields")
    }
    if message.options.mapEntry { try checkMapEntry(message, subject, in: file) }
    for nested in message.nestedType {
      try check(nested, fullName: fullName + "." + nested.name, isProto3, in: file)
    }
    for nested in message.enumType { try check(nested, fullName: fullName + "." + nested.name, in: file) }
    for field in message.extension { try checkExtension(field, scope: fullName, in: file) }
  }

  /// `map<K, V>` compiles to a nested entry message: `K key = 1; V value = 2;` and nothing else.
  private func checkMapEntry(_ entry: MessageProto, _ subject: String, in file: FileProto) throws(CodecError) {
    guard entry.field.count == 2, entry.field.contains(where: { $0.number == 1 && $0.name == "key" }),
      let value = entry.field.first(where: { $0.number == 2 && $0.name == "value" })
    else {
      throw Self.failure(file, subject, "a map entry must have exactly the fields key = 1 and value = 2")
    }
    guard entry.oneofDecl.isEmpty, entry.nestedType.isEmpty, entry.enumType.isEmpty, entry.extension.isEmpty else {
      throw Self.failure(file, subject, "a map entry cannot declare oneofs, types or extensions")
    }
    for field in entry.field where field.label == .repeated {
      throw Self.failure(file, "\(subject) field \(Self.quote(field.name))", "a map entry's field cannot be repeated")
    }
    for key in entry.field where key.number == 1 && !(key.hasType && Self.mapKeyTypes.contains(key.type)) {
      throw Self.failure(
        file, "\(subject) field \"key\"", "a map key must be an integer, bool or string type, not \(Self.kind(key))")
    }
    guard !value.hasType || value.type != .group else {
      throw Self.failure(file, "\(subject) field \"value\"", "a map value cannot be a group")
    }
  }

  private static let mapKeyTypes: Set<Google_Protobuf_FieldDescriptorProto.TypeEnum> = [
    .int32, .int64, .uint32, .uint64, .sint32, .sint64, .fixed32, .fixed64, .sfixed32, .sfixed64, .bool, .string,
  ]

  private func check(_ value: EnumProto, fullName: String, in file: FileProto) throws(CodecError) {
    let subject = "enum \(Self.quote(fullName))"
    guard !value.value.isEmpty else { throw Self.failure(file, subject, "it has no values") }
    var names: Set<String> = []
    for entry in value.value {
      let valueSubject = "\(subject) value \(Self.quote(entry.name))"
      guard Self.isIdentifier(entry.name) else {
        throw Self.failure(file, valueSubject, "the name is not an identifier")
      }
      guard names.insert(entry.name).inserted else {
        throw Self.failure(file, valueSubject, "the enum declares the name twice")
      }
    }
  }

  private func checkExtension(_ field: FieldProto, scope: String, in file: FileProto) throws(CodecError) {
    let name = scope.isEmpty ? field.name : scope + "." + field.name
    try checkNameAndNumber(field, "extension \(Self.quote(name))", in: file)
  }

  // MARK: - Fields

  private func checkNameAndNumber(_ field: FieldProto, _ subject: String, in file: FileProto) throws(CodecError) {
    guard Self.isIdentifier(field.name) else { throw Self.failure(file, subject, "the name is not an identifier") }
    guard Self.fieldNumbers.contains(field.number) else {
      throw Self.failure(
        file, subject,
        "number \(field.number) is outside \(Self.fieldNumbers.lowerBound)...\(Self.fieldNumbers.upperBound)")
    }
    guard !Self.reservedFieldNumbers.contains(field.number) else {
      throw Self.failure(
        file, subject,
        "number \(field.number) is in \(Self.reservedFieldNumbers.lowerBound)...\(Self.reservedFieldNumbers.upperBound),"
          + " which protobuf reserves")
    }
    if field.hasJsonName {
      // Written into the JSON output as it is, between quotes.
      guard !field.jsonName.isEmpty,
        field.jsonName.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0 != "\"" && $0 != "\\" })
      else {
        throw Self.failure(file, subject, "json_name \(Self.quote(field.jsonName)) is empty or needs escaping")
      }
    }
  }

  /// The type must be known, and `type_name` must name a declared type of the right kind.
  private func checkType(_ field: FieldProto, _ subject: String, in file: FileProto) throws(CodecError) {
    let typeName = Self.resolvable(field.typeName)
    guard field.hasType else {
      // descriptor.proto allows a type_name alone: the type is then whatever it names.
      guard !field.typeName.isEmpty else { throw Self.failure(file, subject, "it has neither a type nor a type_name") }
      guard self.messages[typeName] != nil || self.enums.contains(typeName) else {
        throw Self.failure(file, subject, "type \(Self.quote(field.typeName)) is not in the set", code: .unknownType)
      }
      return
    }
    switch field.type {
    case .message, .group:
      guard self.messages[typeName] != nil else {
        throw Self.failure(
          file, subject, "type \(Self.quote(field.typeName)) is not a message of the set", code: .unknownType)
      }
    case .enum:
      guard self.enums.contains(typeName) else {
        throw Self.failure(
          file, subject, "type \(Self.quote(field.typeName)) is not an enum of the set", code: .unknownType)
      }
    default:
      guard field.typeName.isEmpty else {
        throw Self.failure(
          file, subject, "a field of type \(Self.kind(field)) cannot name a type (\(Self.quote(field.typeName)))")
      }
    }
  }

  // MARK: - Helpers

  /// A type name as the pool looks it up: fully qualified, without the leading dot.
  private static func resolvable(_ typeName: String) -> String {
    String(typeName.drop(while: { $0 == "." }))
  }

  private static func kind(_ field: FieldProto) -> String {
    field.hasType ? String(describing: field.type) : "a type_name"
  }

  /// `[A-Za-z_][A-Za-z0-9_]*`, as protoc requires of every name.
  static func isIdentifier(_ name: String) -> Bool {
    guard let first = name.utf8.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { return false }
    return name.utf8.allSatisfy { byte in
      switch byte {
      case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
        UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
        true
      default: false
      }
    }
  }

  /// Identifiers joined by single dots (a package).
  static func isQualifiedIdentifier(_ name: String) -> Bool {
    name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { isIdentifier(String($0)) }
  }

  /// A name as an error shows it: quoted, escaped, and cut at 100 characters.
  static func quote(_ name: String) -> String {
    let shown =
      name.unicodeScalars.count > 100 ? String(String.UnicodeScalarView(name.unicodeScalars.prefix(100))) + "…" : name
    return shown.debugDescription
  }

  private static func failure(
    _ file: FileProto, _ subject: String?, _ problem: String, code: CodecError.Code = .invalidDescriptor
  ) -> CodecError {
    let place = subject.map { ": " + $0 } ?? ""
    return CodecError(code: code, reason: "descriptor set: file \(quote(file.name))\(place): \(problem)")
  }
}

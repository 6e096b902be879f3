internal import SwiftProtobuf

/// Turns the descriptor protos into resolved, index-linked layouts.
///
/// Run it on files that `DescriptorValidator` accepted. It does not trap on others either: a
/// number outside the dense table goes to the sparse one, an out-of-range oneof index is no
/// oneof, and tags are computed without overflow.
struct DescriptorPoolBuilder {
  private struct PendingMessage {
    var fullName: String
    var proto: Google_Protobuf_DescriptorProto
    var isProto3: Bool
  }

  private var pendingMessages: [PendingMessage] = []
  private var enums: [EnumLayout] = []
  private var messageIndexByName: [String: Int] = [:]
  private var enumIndexByName: [String: Int] = [:]

  init(files: [Google_Protobuf_FileDescriptorProto]) {
    for file in files {
      let prefix = file.package.isEmpty ? "" : file.package + "."
      let isProto3 = file.syntax == "proto3"
      for message in file.messageType { collect(message, prefix: prefix, isProto3: isProto3) }
      for value in file.enumType { collect(value, prefix: prefix, isClosed: !isProto3) }
    }
  }

  private mutating func collect(_ message: Google_Protobuf_DescriptorProto, prefix: String, isProto3: Bool) {
    let fullName = prefix + message.name
    if messageIndexByName[fullName] == nil {
      messageIndexByName[fullName] = pendingMessages.count
      pendingMessages.append(PendingMessage(fullName: fullName, proto: message, isProto3: isProto3))
    }
    for nested in message.nestedType { collect(nested, prefix: fullName + ".", isProto3: isProto3) }
    for nested in message.enumType { collect(nested, prefix: fullName + ".", isClosed: !isProto3) }
  }

  private mutating func collect(_ value: Google_Protobuf_EnumDescriptorProto, prefix: String, isClosed: Bool) {
    let fullName = prefix + value.name
    guard enumIndexByName[fullName] == nil else { return }
    var numbersByName: [String: Int32] = [:]
    var namesByNumber: [Int32: String] = [:]
    var quoted: [Int32: [UInt8]] = [:]
    for entry in value.value {
      numbersByName[entry.name] = entry.number
      if namesByNumber[entry.number] == nil {  // aliases: the first name is canonical
        namesByNumber[entry.number] = entry.name
        quoted[entry.number] = Array("\"\(entry.name)\"".utf8)
      }
    }
    enumIndexByName[fullName] = enums.count
    enums.append(
      EnumLayout(
        fullName: fullName, numbersByName: numbersByName, namesByNumber: namesByNumber,
        quotedNamesByNumber: quoted, isClosed: isClosed))
  }

  func build() throws(CodecError) -> DescriptorPool {
    var messages: [MessageLayout] = []
    messages.reserveCapacity(pendingMessages.count)
    for pending in pendingMessages { messages.append(try layout(of: pending)) }
    return DescriptorPool(messages: messages, enums: enums)
  }

  private func layout(of pending: PendingMessage) throws(CodecError) -> MessageLayout {
    let proto = pending.proto
    var fields: [FieldLayout] = []
    for field in proto.field.sorted(by: { $0.number < $1.number }) {
      fields.append(try layout(of: field, in: pending))
    }
    var fieldsByName: [String: Int] = [:]
    // Sized by the largest number that fits the dense table (every such number is below 256).
    let denseCount = fields.reduce(0) { count, field in
      MessageLayout.isDense(field.number) ? max(count, Int(field.number) + 1) : count
    }
    var denseNumbers = [Int32](repeating: -1, count: denseCount)
    var sparseNumbers: [Int32: Int] = [:]
    for (index, field) in fields.enumerated() {
      fieldsByName[field.jsonName] = index
      fieldsByName[field.name] = index
      if MessageLayout.isDense(field.number) {
        denseNumbers[Int(field.number)] = Int32(truncatingIfNeeded: index)
      } else {
        sparseNumbers[field.number] = index
      }
    }
    var wellKnown = WellKnownType(fullName: pending.fullName)
    if let expected = wellKnown, !hasExpectedShape(expected, fields) {
      wellKnown = nil  // a look-alike with other fields: treat it as an ordinary message
    }
    return MessageLayout(
      fullName: pending.fullName, fields: fields, fieldsByName: fieldsByName, denseNumbers: denseNumbers,
      sparseNumbers: sparseNumbers, oneofNames: proto.oneofDecl.map(\.name),
      wellKnown: wellKnown, isMapEntry: proto.options.mapEntry)
  }

  /// The special JSON code indexes fields directly and reads and writes them with their usual
  /// wire types (an Any's type URL is sliced out of the input), so a well-known type must have
  /// its usual shape: fields, kinds and labels.
  private func hasExpectedShape(_ wellKnown: WellKnownType, _ fields: [FieldLayout]) -> Bool {
    let numbers = fields.map(\.number)
    let kinds = fields.map(\.kind)
    let singular = !fields.contains(where: \.isRepeated)
    switch wellKnown {
    case .any: return numbers == [1, 2] && kinds == [.string, .bytes] && singular
    case .timestamp, .duration: return numbers == [1, 2] && kinds == [.int64, .int32] && singular
    case .fieldMask: return numbers == [1] && kinds == [.string] && fields[0].isRepeated
    case .structValue:
      guard numbers == [1], fields[0].isMap, pendingMessages.indices.contains(fields[0].messageIndex) else {
        return false
      }
      let entry = pendingMessages[fields[0].messageIndex].proto.field.sorted { $0.number < $1.number }
      return entry.map(\.type) == [.string, .message]
    case .listValue: return numbers == [1] && kinds == [.message] && fields[0].isRepeated
    case .value:
      return numbers == [1, 2, 3, 4, 5, 6] && kinds == [.enumeration, .double, .string, .bool, .message, .message]
        && singular
    case .empty: return true
    default: return numbers == [1] && singular && kinds[0] != .message && kinds[0] != .group
    }
  }

  private func layout(
    of field: Google_Protobuf_FieldDescriptorProto, in pending: PendingMessage
  ) throws(CodecError) -> FieldLayout {
    let typeName = String(field.typeName.drop(while: { $0 == "." }))
    var type = field.type
    if !field.hasType && !typeName.isEmpty {
      // descriptor.proto allows a type_name alone: the type is then whatever it names.
      type = messageIndexByName[typeName] != nil ? .message : .enum
    }
    let kind: FieldKind
    switch type {
    case .double: kind = .double
    case .float: kind = .float
    case .int64: kind = .int64
    case .uint64: kind = .uint64
    case .int32: kind = .int32
    case .fixed64: kind = .fixed64
    case .fixed32: kind = .fixed32
    case .bool: kind = .bool
    case .string: kind = .string
    case .group: kind = .group
    case .message: kind = .message
    case .bytes: kind = .bytes
    case .uint32: kind = .uint32
    case .enum: kind = .enumeration
    case .sfixed32: kind = .sfixed32
    case .sfixed64: kind = .sfixed64
    case .sint32: kind = .sint32
    case .sint64: kind = .sint64
    @unknown default:
      throw CodecError(code: .invalidDescriptor, reason: "field \(pending.fullName).\(field.name) has an unknown type")
    }
    var messageIndex = -1
    var enumIndex = -1
    if kind == .message || kind == .group {
      guard let index = messageIndexByName[typeName] else {
        throw CodecError(
          code: .unknownType, reason: "type \(typeName) of field \(pending.fullName).\(field.name) is not in the set")
      }
      messageIndex = index
    } else if kind == .enumeration {
      guard let index = enumIndexByName[typeName] else {
        throw CodecError(
          code: .unknownType, reason: "type \(typeName) of field \(pending.fullName).\(field.name) is not in the set")
      }
      enumIndex = index
    }
    let isRepeated = field.label == .repeated
    let entry = messageIndex >= 0 ? pendingMessages[messageIndex].proto : nil
    let isMap =
      isRepeated && kind == .message && entry?.options.mapEntry == true
      && entry?.field.map(\.number).sorted() == [1, 2]
    let isPacked =
      isRepeated && kind.isPackable
      && (field.options.hasPacked ? field.options.packed : pending.isProto3)
    let hasPresence =
      !isRepeated
      && (kind == .message || kind == .group || field.hasOneofIndex || field.proto3Optional || !pending.isProto3)
    let jsonName = field.hasJsonName ? field.jsonName : Self.lowerCamelCase(field.name)
    let oneofIndex = Int(field.oneofIndex)
    return FieldLayout(
      name: field.name, jsonName: jsonName, number: field.number, kind: kind, isRepeated: isRepeated,
      isMap: isMap, isPacked: isPacked, hasPresence: hasPresence,
      oneofIndex: field.hasOneofIndex && pending.proto.oneofDecl.indices.contains(oneofIndex) ? oneofIndex : -1,
      messageIndex: messageIndex, enumIndex: enumIndex,
      tag: varintBytes(tagValue(number: field.number, wireType: kind.wireType)),
      packedTag: varintBytes(tagValue(number: field.number, wireType: 2)), jsonKey: Array("\"\(jsonName)\":".utf8),
      protoKey: Array("\"\(field.name)\":".utf8), validatesUTF8: kind == .string && pending.isProto3)
  }

  /// protoc's default JSON name: drop underscores, upper-case the letter after each.
  static func lowerCamelCase(_ name: String) -> String {
    var result = ""
    var capitalizeNext = false
    for character in name {
      if character == "_" {
        capitalizeNext = true
      } else if capitalizeNext {
        result += character.uppercased()
        capitalizeNext = false
      } else {
        result.append(character)
      }
    }
    return result
  }
}

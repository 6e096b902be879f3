internal import SwiftProtobuf

/// Turns the descriptor protos into resolved, index-linked layouts.
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
    var denseNumbers = [Int32](repeating: -1, count: Int(min((fields.last?.number ?? 0) + 1, MessageLayout.denseLimit)))
    var sparseNumbers: [Int32: Int] = [:]
    for (index, field) in fields.enumerated() {
      fieldsByName[field.jsonName] = index
      fieldsByName[field.name] = index
      if field.number < MessageLayout.denseLimit {
        denseNumbers[Int(field.number)] = Int32(index)
      } else {
        sparseNumbers[field.number] = index
      }
    }
    var wellKnown = WellKnownType(fullName: pending.fullName)
    if let expected = wellKnown, !Self.hasExpectedShape(expected, fields) {
      wellKnown = nil  // a look-alike with other fields: treat it as an ordinary message
    }
    return MessageLayout(
      fullName: pending.fullName, fields: fields, fieldsByName: fieldsByName, denseNumbers: denseNumbers,
      sparseNumbers: sparseNumbers, oneofNames: proto.oneofDecl.map(\.name),
      wellKnown: wellKnown, isMapEntry: proto.options.mapEntry)
  }

  /// The special JSON code indexes fields directly, so a well-known type must have its usual shape.
  private static func hasExpectedShape(_ wellKnown: WellKnownType, _ fields: [FieldLayout]) -> Bool {
    let numbers = fields.map(\.number)
    switch wellKnown {
    case .any, .timestamp, .duration: return numbers == [1, 2]
    case .fieldMask: return numbers == [1] && fields[0].kind == .string && fields[0].isRepeated
    case .structValue: return numbers == [1] && fields[0].isMap
    case .listValue: return numbers == [1] && fields[0].kind == .message && fields[0].isRepeated
    case .value: return numbers == [1, 2, 3, 4, 5, 6] && fields[4].kind == .message && fields[5].kind == .message
    case .empty: return true
    default: return numbers == [1] && !fields[0].isRepeated && fields[0].kind != .message
    }
  }

  private func layout(
    of field: Google_Protobuf_FieldDescriptorProto, in pending: PendingMessage
  ) throws(CodecError) -> FieldLayout {
    let kind: FieldKind
    switch field.type {
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
    let typeName = String(field.typeName.drop(while: { $0 == "." }))
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
    let number = UInt64(UInt32(bitPattern: field.number))
    return FieldLayout(
      name: field.name, jsonName: jsonName, number: field.number, kind: kind, isRepeated: isRepeated,
      isMap: isMap, isPacked: isPacked, hasPresence: hasPresence,
      oneofIndex: field.hasOneofIndex ? Int(field.oneofIndex) : -1, messageIndex: messageIndex,
      enumIndex: enumIndex, tag: varintBytes(number << 3 | UInt64(kind.wireType)),
      packedTag: varintBytes(number << 3 | 2), jsonKey: Array("\"\(jsonName)\":".utf8),
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

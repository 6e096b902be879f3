/// The scalar or composite type of a field, as in `FieldDescriptorProto.Type`.
enum FieldKind: UInt8, Sendable {
  case double, float, int64, uint64, int32, fixed64, fixed32, bool, string, bytes
  case uint32, enumeration, sfixed32, sfixed64, sint32, sint64, message, group

  /// The wire type of one (unpacked) value.
  var wireType: UInt8 {
    switch self {
    case .int64, .uint64, .int32, .bool, .uint32, .enumeration, .sint32, .sint64: 0
    case .double, .fixed64, .sfixed64: 1
    case .string, .bytes, .message: 2
    case .group: 3
    case .float, .fixed32, .sfixed32: 5
    }
  }

  /// True for the kinds that a repeated field may pack.
  var isPackable: Bool { wireType == 0 || wireType == 1 || wireType == 5 }

  /// The proto name of the kind, used in error messages (`expected int32`).
  var protoName: String {
    switch self {
    case .enumeration: "enum"
    default: String(describing: self)
    }
  }
}

/// The well-known types whose JSON form is special.
enum WellKnownType: Sendable {
  case any, timestamp, duration, fieldMask, structValue, value, listValue, empty
  case doubleValue, floatValue, int64Value, uint64Value, int32Value, uint32Value
  case boolValue, stringValue, bytesValue

  init?(fullName: String) {
    switch fullName {
    case "google.protobuf.Any": self = .any
    case "google.protobuf.Timestamp": self = .timestamp
    case "google.protobuf.Duration": self = .duration
    case "google.protobuf.FieldMask": self = .fieldMask
    case "google.protobuf.Struct": self = .structValue
    case "google.protobuf.Value": self = .value
    case "google.protobuf.ListValue": self = .listValue
    case "google.protobuf.Empty": self = .empty
    case "google.protobuf.DoubleValue": self = .doubleValue
    case "google.protobuf.FloatValue": self = .floatValue
    case "google.protobuf.Int64Value": self = .int64Value
    case "google.protobuf.UInt64Value": self = .uint64Value
    case "google.protobuf.Int32Value": self = .int32Value
    case "google.protobuf.UInt32Value": self = .uint32Value
    case "google.protobuf.BoolValue": self = .boolValue
    case "google.protobuf.StringValue": self = .stringValue
    case "google.protobuf.BytesValue": self = .bytesValue
    default: return nil
    }
  }

  /// True for the wrapper types (`{"value": x}` in binary, bare `x` in JSON).
  var isWrapper: Bool {
    switch self {
    case .doubleValue, .floatValue, .int64Value, .uint64Value, .int32Value, .uint32Value,
      .boolValue, .stringValue, .bytesValue:
      true
    default: false
    }
  }
}

/// One field of a message, with everything the hot paths need precomputed.
///
/// A class, not a struct: the hot paths pass layouts around, and a reference costs one
/// retain where a struct of arrays and strings costs one per member.
final class FieldLayout: Sendable {
  let name: String
  let jsonName: String
  let number: Int32
  let kind: FieldKind
  let isRepeated: Bool
  let isMap: Bool
  /// Repeated scalars written packed (proto3 default, or `[packed = true]`).
  let isPacked: Bool
  /// Singular field whose presence is tracked (message, oneof member, `optional`, proto2).
  let hasPresence: Bool
  /// Index into the message's oneofs (always in range), or -1.
  let oneofIndex: Int
  /// Index of the message type in the pool, or -1.
  let messageIndex: Int
  /// Index of the enum type in the pool, or -1.
  let enumIndex: Int
  /// The tag for one value of this field (wire type of `kind`).
  let tag: [UInt8]
  /// The length-delimited tag, used for packed repeated fields.
  let packedTag: [UInt8]
  /// `"jsonName":` as UTF-8.
  let jsonKey: [UInt8]
  /// `"name":` as UTF-8.
  let protoKey: [UInt8]
  /// A proto3 string: parsers reject invalid UTF-8 in every occurrence, so `scan` checks each.
  /// Other strings (proto2) are checked only when printed, since JSON cannot carry them.
  let validatesUTF8: Bool

  init(
    name: String, jsonName: String, number: Int32, kind: FieldKind, isRepeated: Bool, isMap: Bool, isPacked: Bool,
    hasPresence: Bool, oneofIndex: Int, messageIndex: Int, enumIndex: Int, tag: [UInt8], packedTag: [UInt8],
    jsonKey: [UInt8], protoKey: [UInt8], validatesUTF8: Bool
  ) {
    self.name = name
    self.jsonName = jsonName
    self.number = number
    self.kind = kind
    self.isRepeated = isRepeated
    self.isMap = isMap
    self.isPacked = isPacked
    self.hasPresence = hasPresence
    self.oneofIndex = oneofIndex
    self.messageIndex = messageIndex
    self.enumIndex = enumIndex
    self.tag = tag
    self.packedTag = packedTag
    self.jsonKey = jsonKey
    self.protoKey = protoKey
    self.validatesUTF8 = validatesUTF8
  }
}

/// One message type: its fields in field-number order and the lookup tables.
final class MessageLayout: Sendable {
  let fullName: String
  let fields: [FieldLayout]
  /// JSON name and proto name → index in `fields`.
  let fieldsByName: [String: Int]
  /// Field number → index in `fields`, for numbers below `denseLimit`; -1 when absent.
  let denseNumbers: [Int32]
  /// Field number → index, for large field numbers.
  let sparseNumbers: [Int32: Int]
  let oneofNames: [String]
  let wellKnown: WellKnownType?
  let isMapEntry: Bool

  init(
    fullName: String, fields: [FieldLayout], fieldsByName: [String: Int], denseNumbers: [Int32],
    sparseNumbers: [Int32: Int], oneofNames: [String], wellKnown: WellKnownType?, isMapEntry: Bool
  ) {
    self.fullName = fullName
    self.fields = fields
    self.fieldsByName = fieldsByName
    self.denseNumbers = denseNumbers
    self.sparseNumbers = sparseNumbers
    self.oneofNames = oneofNames
    self.wellKnown = wellKnown
    self.isMapEntry = isMapEntry
  }

  static let denseLimit: Int32 = 256

  /// True for the numbers `denseNumbers` holds (the others are in `sparseNumbers`).
  @inline(__always)
  static func isDense(_ number: Int32) -> Bool {
    number >= 0 && number < denseLimit
  }

  @inline(__always)
  func fieldIndex(number: Int32) -> Int? {
    if MessageLayout.isDense(number) {
      let index = denseNumbers.count > Int(number) ? Int(denseNumbers[Int(number)]) : -1
      return index >= 0 ? index : nil
    }
    return sparseNumbers[number]
  }

  @inline(__always)
  func fieldIndex(name: String) -> Int? {
    // Small messages: a linear scan beats hashing the key.
    if fields.count <= 6 {
      for index in fields.indices where fields[index].jsonName == name || fields[index].name == name {
        return index
      }
      return nil
    }
    return fieldsByName[name]
  }
}

/// One enum type.
struct EnumLayout: Sendable {
  var fullName: String
  var numbersByName: [String: Int32]
  var namesByNumber: [Int32: String]
  /// `"NAME"` with quotes, per number, for output.
  var quotedNamesByNumber: [Int32: [UInt8]]
  /// A proto2 enum: numbers it does not declare are unknown fields, not values.
  var isClosed: Bool
}

/// Every message and enum type of a registry, resolved to indices; immutable once built.
final class DescriptorPool: Sendable {
  let messages: [MessageLayout]
  let enums: [EnumLayout]
  let messageIndexByName: [String: Int]
  let enumIndexByName: [String: Int]

  init(messages: [MessageLayout], enums: [EnumLayout]) {
    self.messages = messages
    self.enums = enums
    var messageIndexByName: [String: Int] = [:]
    for (index, message) in messages.enumerated() { messageIndexByName[message.fullName] = index }
    var enumIndexByName: [String: Int] = [:]
    for (index, value) in enums.enumerated() { enumIndexByName[value.fullName] = index }
    self.messageIndexByName = messageIndexByName
    self.enumIndexByName = enumIndexByName
  }
}

/// Encodes a varint into a fresh array (descriptor-load time only).
func varintBytes(_ value: UInt64) -> [UInt8] {
  var result: [UInt8] = []
  var value = value
  while value >= 0x80 {
    result.append(UInt8(truncatingIfNeeded: value) | 0x80)
    value >>= 7
  }
  result.append(UInt8(value))
  return result
}

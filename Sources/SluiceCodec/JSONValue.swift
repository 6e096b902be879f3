/// A parsed JSON document, as read by ``JSONCodec/parseJSON(_:)``.
///
/// Numbers keep their exact lexeme so that 64-bit integers never pass through a `Double`.
/// Objects keep their members in document order; keys are unique (the reader rejects
/// duplicates).
public enum JSONValue: Sendable, Equatable {
  /// `null`.
  case null
  /// `true` or `false`.
  case bool(Bool)
  /// A number, as its exact JSON lexeme (e.g. `"-12"`, `"1.5e3"`); when built by hand it must
  /// follow the JSON number grammar, since ``serialized`` writes it as is.
  case number(String)
  /// A string, unescaped.
  case string(String)
  /// An array.
  case array([JSONValue])
  /// An object, members in document order.
  case object(JSONObject)

  /// The value as JSON text (compact, no insignificant whitespace).
  public var serialized: String {
    var writer = JSONWriter()
    writer.write(self)
    return String(decoding: writer.bytes, as: UTF8.self)
  }

  /// The value as UTF-8 JSON text (compact).
  public var serializedBytes: [UInt8] {
    var writer = JSONWriter()
    writer.write(self)
    return writer.bytes
  }

  /// The object's members, or `nil` when the value is not an object.
  public var objectValue: JSONObject? {
    if case .object(let object) = self { return object }
    return nil
  }

  /// Creates a number from an integer.
  public static func integer(_ value: some BinaryInteger) -> JSONValue {
    .number(String(value))
  }
}

/// The members of a JSON object, in document order.
public struct JSONObject: Sendable, Equatable, ExpressibleByDictionaryLiteral {
  /// The members, in order.
  public var members: [(key: String, value: JSONValue)]

  /// Creates an object from its members.
  /// - Parameter members: Key/value pairs, in order. Keys should be unique.
  public init(_ members: [(key: String, value: JSONValue)] = []) {
    self.members = members
  }

  /// Creates an object from a literal.
  public init(dictionaryLiteral elements: (String, JSONValue)...) {
    self.members = elements.map { (key: $0.0, value: $0.1) }
  }

  /// The value of the first member named `key`; setting appends or replaces it.
  public subscript(key: String) -> JSONValue? {
    get { members.first(where: { $0.key == key })?.value }
    set {
      if let index = members.firstIndex(where: { $0.key == key }) {
        if let newValue { members[index].value = newValue } else { members.remove(at: index) }
      } else if let newValue {
        members.append((key: key, value: newValue))
      }
    }
  }

  /// The number of members.
  public var count: Int { members.count }

  /// True when the object has no member.
  public var isEmpty: Bool { members.isEmpty }

  /// Equal when the members are equal in the same order.
  public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
    lhs.members.count == rhs.members.count
      && zip(lhs.members, rhs.members).allSatisfy { $0.key == $1.key && $0.value == $1.value }
  }
}

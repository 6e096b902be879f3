/// An error raised while loading descriptors or translating between JSON and protobuf binary.
///
/// The ``message`` is meant for the client that sent the input: it says what is wrong and
/// where, with the JSON path of the field (`invalid value for field pt.value: expected int32,
/// got "abc"`). It never contains internal details beyond the input itself.
public struct CodecError: Error, Sendable, Hashable, CustomStringConvertible {
  /// The kind of failure; stable, meant for mapping to a gRPC status code.
  public struct Code: Sendable, Hashable, CustomStringConvertible {
    private enum Wrapped: Sendable, Hashable {
      case malformedJSON, invalidValue, unknownField, duplicateField, tooDeep, tooLarge
      case invalidWireData, unknownType, invalidDescriptor
    }
    private let wrapped: Wrapped
    private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

    /// The input is not valid JSON text (syntax, invalid UTF-8, duplicate keys, bad escapes).
    public static let malformedJSON = Code(.malformedJSON)
    /// A field holds a value of the wrong kind, or out of its type's range.
    public static let invalidValue = Code(.invalidValue)
    /// An object key names no field of the message (and unknown fields are rejected).
    public static let unknownField = Code(.unknownField)
    /// A field was set twice (by both of its names), or two members of one oneof were set.
    public static let duplicateField = Code(.duplicateField)
    /// The input nests deeper than the configured limit.
    public static let tooDeep = Code(.tooDeep)
    /// The input is larger than the configured limit.
    public static let tooLarge = Code(.tooLarge)
    /// The protobuf binary input is truncated or malformed.
    public static let invalidWireData = Code(.invalidWireData)
    /// A type (in a descriptor or in `google.protobuf.Any`) is not in the registry.
    public static let unknownType = Code(.unknownType)
    /// The FileDescriptorSet itself could not be used.
    public static let invalidDescriptor = Code(.invalidDescriptor)

    /// The code's name, e.g. `invalidValue`.
    public var description: String { String(describing: wrapped) }
  }

  /// The kind of failure.
  public var code: Code
  /// The reason, without the location (e.g. `expected int32, got "abc"`).
  public var reason: String
  /// The path of the offending field, outermost first (`["pt", "value"]`, `["items", "[2]"]`).
  public var path: [String]

  /// Creates an error.
  /// - Parameters:
  ///   - code: The kind of failure.
  ///   - reason: What is wrong, without the location.
  ///   - path: The path of the field, outermost first.
  public init(code: Code, reason: String, path: [String] = []) {
    self.code = code
    self.reason = reason
    self.path = path
  }

  /// The dotted path of the offending field, e.g. `pt.value` or `items[2].name`.
  public var pathString: String {
    var result = ""
    for component in path {
      if component.hasPrefix("[") || result.isEmpty {
        result += component
      } else {
        result += "." + component
      }
    }
    return result
  }

  /// The user-facing text, including the path.
  public var message: String {
    let where_ = pathString
    if code == .unknownField {
      return "unknown field \"\(where_)\"" + (reason.isEmpty ? "" : ": \(reason)")
    }
    if where_.isEmpty { return reason }
    switch code {
    case .invalidValue, .duplicateField, .unknownType:
      return "invalid value for field \(where_): \(reason)"
    default:
      return "\(reason) (at \(where_))"
    }
  }

  /// Same as ``message``.
  public var description: String { message }

  /// The same error located one level further out (`component` becomes the first path item).
  func prefixed(_ component: String) -> CodecError {
    var copy = self
    copy.path.insert(component, at: 0)
    return copy
  }

  static func invalid(_ reason: String) -> CodecError {
    CodecError(code: .invalidValue, reason: reason)
  }

  static func wire(_ reason: String) -> CodecError {
    CodecError(code: .invalidWireData, reason: "invalid protobuf binary: " + reason)
  }
}

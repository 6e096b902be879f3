internal import Foundation
internal import GRPCCore
internal import SluiceCodec

/// A REST request's message as JSON, as google/api/http.proto maps it: the body (the whole
/// message for `body: "*"`, one field's value for `body: "field"`, nothing without `body`), then
/// the path's variables, then (unless `body: "*"`) the query parameters for the fields that are
/// left. Values from the path and the query are text; each is written as the JSON its field takes
/// (a bool, an enum's name or number, a number, a string, a well-known type's string), so the
/// codec checks them as it checks any JSON. Keys are the fields' JSON names. A query parameter
/// that names no field is refused, or skipped with `ignoringUnknownQuery`
/// (`--rest-ignore-unknown-query`, Envoy's `ignore_unknown_query_parameters`).
enum RESTRequest {
  static func message(
    rule: HTTPRule, input: SluiceCodec.MessageDescriptor, bindings: [PathTemplate.Binding], query: Substring?,
    body: JSONValue?, ignoringUnknownQuery: Bool = false
  ) throws(RPCError) -> JSONValue {
    var object = JSONObject()
    switch (rule.body, body) {
    case ("*", .object(let whole)?):
      object = whole
    case ("*", nil):
      break
    case ("*", _?):
      throw GRPCErrors.restBody("the body must be a JSON object (this route's body is the whole request)")
    case ("", _?):
      throw GRPCErrors.restBody("this route takes no request body")
    case ("", nil):
      break
    case (let field, let value?):
      guard let descriptor = input.field(named: field) else {
        throw GRPCErrors.restBody("the body field \(field) is not in \(input.fullName)")
      }
      Self.set(&object, [descriptor.jsonName], aliases: [[descriptor.name]], value)
    case (_, nil):
      break
    }
    // The fields the path or the body set (JSON key paths): a query parameter may not set them,
    // nor a field inside or around one of them, again.
    var bound: [String] = []
    if !rule.body.isEmpty, let field = input.field(named: rule.body) { bound.append(field.jsonName) }
    for binding in bindings {
      let (keys, aliases, field) = try Self.resolve(binding.fieldPath, in: input, what: "the path's")
      Self.set(&object, keys, aliases: aliases, try Self.value(binding.value, for: field))
      bound.append(keys.joined(separator: "."))
    }
    guard let query, !query.isEmpty else { return .object(object) }
    guard rule.body != "*" else {
      throw GRPCErrors.restQuery("this route takes every field from its body, so no query parameters")
    }
    var seen: Set<String> = []
    for pair in query.split(separator: "&") where !pair.isEmpty {
      let (rawKey, rawValue) =
        pair.firstIndex(of: "=").map { (pair[..<$0], pair[pair.index(after: $0)...]) } ?? (pair, "")
      guard let key = Self.formDecode(rawKey), let text = Self.formDecode(rawValue) else {
        throw GRPCErrors.restQuery("the query parameter \(String(rawKey.prefix(64))) is not well percent-encoded UTF-8")
      }
      let path = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
      if ignoringUnknownQuery, Self.namesNoField(path, in: input) { continue }
      let (keys, aliases, field) = try Self.resolve(path, in: input, what: "the query parameter")
      let joined = keys.joined(separator: ".")
      if bound.contains(where: { $0 == joined || joined.hasPrefix($0 + ".") || $0.hasPrefix(joined + ".") }) {
        throw GRPCErrors.restQuery("\(key) is set by the path or the body of this route")
      }
      let value = try Self.value(text, for: field)
      if field.isRepeated {
        Self.append(&object, keys, value)
      } else {
        guard seen.insert(keys.joined(separator: ".")).inserted else {
          throw GRPCErrors.restQuery("\(key) is given twice but is not repeated")
        }
        Self.set(&object, keys, aliases: aliases, value)
      }
    }
    return .object(object)
  }

  /// The JSON keys down to a field (and the proto names, to replace a member spelled that way),
  /// and the field; INVALID_ARGUMENT naming the path when a name is not a field, or a field on the
  /// way is not a message.
  private static func resolve(_ path: [String], in input: SluiceCodec.MessageDescriptor, what: String) throws(RPCError)
    -> ([String], [[String]], FieldDescriptor)
  {
    var message: SluiceCodec.MessageDescriptor? = input
    var keys: [String] = []
    var aliases: [String] = []
    var last: FieldDescriptor?
    for (index, name) in path.enumerated() {
      guard let current = message, let field = current.field(named: name) else {
        throw GRPCErrors.restQuery("\(what) \(path.joined(separator: ".")) is not a field of \(input.fullName)")
      }
      let isLast = index == path.count - 1
      if !isLast, field.kind != .message || field.isRepeated || field.isMap || field.isScalarWellKnownType {
        throw GRPCErrors.restQuery("\(what) \(path.joined(separator: ".")): \(name) is not a message field")
      }
      if isLast, field.isMap || (field.kind == .message && !field.isScalarWellKnownType) {
        throw GRPCErrors.restQuery("\(what) \(path.joined(separator: ".")) is a message or a map: send it in a body")
      }
      keys.append(field.jsonName)
      aliases.append(field.name)
      message = field.message
      last = field
    }
    guard let last, !keys.isEmpty else { throw GRPCErrors.restQuery("\(what) has an empty name") }
    return (keys, [aliases], last)
  }

  /// Whether a name on `path` is not a field of the message it is looked up in (a parameter for
  /// some other service, or a typo), as opposed to a field that cannot take a query value.
  private static func namesNoField(_ path: [String], in input: SluiceCodec.MessageDescriptor) -> Bool {
    var message: SluiceCodec.MessageDescriptor? = input
    for name in path {
      guard let current = message else { return false }
      guard let field = current.field(named: name) else { return true }
      message = field.message
    }
    return false
  }

  /// Text from a path or a query as the JSON its field takes.
  private static func value(_ text: String, for field: FieldDescriptor) throws(RPCError) -> JSONValue {
    var kind = field.kind
    if kind == .message, let inner = field.message?.field(named: "value"), field.isScalarWellKnownType {
      kind = inner.kind  // a wrapper: BoolValue is a bool, Int32Value a number
    }
    switch kind {
    case .bool:
      switch text {
      case "true", "1": return .bool(true)
      case "false", "0": return .bool(false)
      default: throw GRPCErrors.restQuery("\(field.name) takes true or false, not \(String(text.prefix(64)))")
      }
    case .enumeration:
      let digits = text.utf8.drop(while: { $0 == UInt8(ascii: "-") })
      return !digits.isEmpty && digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        ? .number(text) : .string(text)
    case .number, .string, .bytes, .message:
      // Numbers as strings: proto JSON takes every numeric kind as a quoted decimal too, and the
      // codec checks its range.
      return .string(text)
    }
  }

  /// Sets `keys` (creating objects on the way), replacing a member spelled with the proto names.
  private static func set(_ object: inout JSONObject, _ keys: [String], aliases: [[String]], _ value: JSONValue) {
    guard let key = keys.first else { return }
    let alias = aliases.first?.first
    let rest = Array(keys.dropFirst())
    let restAliases = aliases.map { Array($0.dropFirst()) }
    var inner = JSONObject()
    if let existing = object.members.firstIndex(where: { $0.key == key || $0.key == alias }) {
      if case .object(let found) = object.members[existing].value { inner = found }
      object.members.remove(at: existing)
    }
    if rest.isEmpty {
      object.members.append((key: key, value: value))
    } else {
      Self.set(&inner, rest, aliases: restAliases, value)
      object.members.append((key: key, value: .object(inner)))
    }
  }

  /// Appends to the array at `keys` (a repeated field given several times).
  private static func append(_ object: inout JSONObject, _ keys: [String], _ value: JSONValue) {
    guard let key = keys.first else { return }
    let index = object.members.firstIndex(where: { $0.key == key })
    if keys.count == 1 {
      var values: [JSONValue] = []
      if let index, case .array(let found) = object.members[index].value { values = found }
      if let index { object.members.remove(at: index) }
      object.members.append((key: key, value: .array(values + [value])))
      return
    }
    var inner = JSONObject()
    if let index, case .object(let found) = object.members[index].value { inner = found }
    if let index { object.members.remove(at: index) }
    Self.append(&inner, Array(keys.dropFirst()), value)
    object.members.append((key: key, value: .object(inner)))
  }

  /// A query string's key or value: `+` is a space, then percent-decoding (nil when broken or not
  /// UTF-8).
  private static func formDecode(_ text: Substring) -> String? {
    let spaced = text.contains("+") ? Substring(String(text.map { $0 == "+" ? " " : $0 })) : text
    return PathTemplate.decode(spaced, keepingSlashes: false)
  }

  /// The response body: the whole message, or its `response_body` field's value.
  static func responseBody(_ json: [UInt8], rule: HTTPRule, output: SluiceCodec.MessageDescriptor, bridge: JSONBridge)
    throws(RPCError) -> [UInt8]
  {
    guard !rule.responseBody.isEmpty, let field = output.field(named: rule.responseBody) else { return json }
    guard case .object(let object) = try bridge.parse(json) else { return json }
    return (object[field.jsonName] ?? .null).serializedBytes
  }

  // MARK: - google.api.HttpBody

  /// The message type of a raw HTTP body (google/api/httpbody.proto).
  static let httpBodyType = "google.api.HttpBody"

  /// Where a route's raw request body goes: the whole request is an HttpBody (`body: "*"`), or
  /// its `body` field is one; nil when the body is JSON.
  static func rawRequestBody(_ rule: HTTPRule, input: SluiceCodec.MessageDescriptor) -> Bool {
    switch rule.body {
    case "": false
    case "*": input.fullName == Self.httpBodyType
    case let name: input.field(named: name)?.message?.fullName == Self.httpBodyType
    }
  }

  /// Whether a route answers with raw bytes: the response (or its `response_body` field) is an
  /// HttpBody.
  static func rawResponseBody(_ rule: HTTPRule, output: SluiceCodec.MessageDescriptor) -> Bool {
    rule.responseBody.isEmpty
      ? output.fullName == Self.httpBodyType
      : output.field(named: rule.responseBody)?.message?.fullName == Self.httpBodyType
  }

  /// A raw body as the HttpBody JSON it stands for: its `Content-Type` and its bytes.
  static func httpBodyJSON(contentType: String?, _ bytes: some Collection<UInt8>) -> JSONValue {
    var object = JSONObject()
    if let contentType { object.members.append((key: "contentType", value: .string(contentType))) }
    object.members.append((key: "data", value: .string(Data(bytes).base64EncodedString())))
    return .object(object)
  }

  /// The content type and bytes of an HttpBody answer (the response's JSON, or its
  /// `response_body` field's), whichever names the JSON output options gave its fields.
  static func httpBody(_ json: [UInt8], rule: HTTPRule, output: SluiceCodec.MessageDescriptor, bridge: JSONBridge)
    throws(RPCError) -> (contentType: String, data: [UInt8])
  {
    var value = try bridge.parse(json)
    if !rule.responseBody.isEmpty, let field = output.field(named: rule.responseBody), case .object(let outer) = value {
      value = outer[field.jsonName] ?? outer[field.name] ?? .object(JSONObject())
    }
    guard case .object(let body) = value else { return ("application/octet-stream", []) }
    var contentType = "application/octet-stream"
    if case .string(let text)? = body["contentType"] ?? body["content_type"], !text.isEmpty { contentType = text }
    var data: [UInt8] = []
    if case .string(let text)? = body["data"] {
      guard let decoded = Base64.decode(text) else {
        throw GRPCErrors.invalidResponse(Self.httpBodyType)
      }
      data = decoded
    }
    return (contentType, data)
  }
}

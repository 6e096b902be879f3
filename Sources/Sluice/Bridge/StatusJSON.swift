internal import Foundation
internal import GRPCCore
internal import NIOHPACK
internal import SluiceCodec

/// The `$end` frame (PROTOCOL.md): a `google.rpc.Status` JSON object with the trailers.
///
/// A status whose trailers carry `grpc-status-details-bin` (a serialized `google.rpc.Status`, as
/// rich errors send it) also gets its `details`: each `google.protobuf.Any` in proto3 JSON
/// (`{"@type":"type.googleapis.com/pkg.Type",…fields}`) when the bridge's descriptors have its type,
/// else `{"@type":…,"value":"<base64 of the message>"}`.
enum StatusJSON {
  /// `{"$end":{"code":N,"message":"…","trailers":{"k":["v"]}}}`.
  static func endFrame(code: RPCError.Code?, message: String, trailers: Metadata, bridge: JSONBridge? = nil)
    -> [UInt8]
  {
    let details = Self.details(trailers, bridge: bridge)
    return Self.endFrame(code: code, message: message, trailers: Self.json(trailers), details: details)
  }

  /// The `$end` of an RPC on the engine: its error (nil: OK), with the error's metadata and the
  /// handler's `trailers`.
  static func endFrame(_ error: RPCError?, trailers: HPACKHeaders, bridge: JSONBridge? = nil) -> [UInt8] {
    JSONValue.object(["$end": .object(Self.status(error, trailers: trailers, bridge: bridge))]).serializedBytes
  }

  /// The status of an RPC on the engine, as `$end` carries it: its error (nil: OK), with the
  /// error's metadata and the handler's `trailers`.
  static func status(_ error: RPCError?, trailers: HPACKHeaders, bridge: JSONBridge? = nil) -> JSONObject {
    var object = Self.json(error?.metadata ?? [:])
    object.members += Self.json(trailers).members
    let details = StatusDetails.statuses(error?.metadata ?? [:], trailers).flatMap {
      Self.details($0, bridge: bridge)
    }
    return Self.status(code: error?.code, message: error?.message ?? "", trailers: object, details: details)
  }

  private static func endFrame(code: RPCError.Code?, message: String, trailers: JSONObject, details: [JSONValue])
    -> [UInt8]
  {
    let status = Self.status(code: code, message: message, trailers: trailers, details: details)
    return JSONValue.object(["$end": .object(status)]).serializedBytes
  }

  /// A `google.rpc.Status` object: `{"code":N,"message":"…"}`, plus the trailers when there are any.
  static func status(code: RPCError.Code?, message: String, trailers: Metadata = [:], bridge: JSONBridge? = nil)
    -> JSONObject
  {
    Self.status(
      code: code, message: message, trailers: Self.json(trailers), details: Self.details(trailers, bridge: bridge))
  }

  private static func status(code: RPCError.Code?, message: String, trailers: JSONObject, details: [JSONValue])
    -> JSONObject
  {
    var status: JSONObject = ["code": .integer(code?.rawValue ?? 0)]
    if !message.isEmpty { status.members.append((key: "message", value: .string(message))) }
    if !details.isEmpty { status.members.append((key: "details", value: .array(details))) }
    if !trailers.isEmpty { status.members.append((key: "trailers", value: .object(trailers))) }
    return status
  }

  /// The details of the metadata's `grpc-status-details-bin` values, each an Any.
  private static func details(_ metadata: Metadata, bridge: JSONBridge?) -> [JSONValue] {
    StatusDetails.statuses(metadata).flatMap { Self.details($0, bridge: bridge) }
  }

  /// The Anys of one serialized `google.rpc.Status`.
  private static func details(_ status: [UInt8], bridge: JSONBridge?) -> [JSONValue] {
    StatusDetails.anys(in: status).map { Self.any(type: $0.type, value: $0.value, bridge: bridge) }
  }

  /// One Any as proto3 JSON, or with its bytes in base64 when its type is not known (or its bytes
  /// do not parse as it: they come from a service, so nothing here may fail the answer).
  private static func any(type: String, value: [UInt8], bridge: JSONBridge?) -> JSONValue {
    let name = type.split(separator: "/").last.map(String.init) ?? type
    if let bridge, let descriptor = bridge.registry.message(fullName: name),
      let json = try? bridge.codec.json(fromBinary: value, as: descriptor),
      let parsed = try? bridge.parse(json)
    {
      guard case .object(let fields) = parsed else {
        // A well-known type with a JSON form of its own (a wrapper's value, a Timestamp's text).
        return .object(["@type": .string(type), "value": parsed])
      }
      return .object(JSONObject([(key: "@type", value: .string(type))] + fields.members))
    }
    return .object(["@type": .string(type), "value": .string(Data(value).base64EncodedString())])
  }

  /// `{"$headers":{"k":["v"]}}` for an RPC on the engine, or nil when there is nothing to say.
  static func headersFrame(_ headers: HPACKHeaders) -> [UInt8]? {
    let object = Self.json(headers)
    return object.isEmpty ? nil : JSONValue.object(["$headers": .object(object)]).serializedBytes
  }

  /// HTTP/2 header fields as `{"key":["v1","v2"]}` (binary values stay in their base64 form);
  /// transport-level keys left out.
  static func json(_ headers: HPACKHeaders) -> JSONObject {
    Self.group(headers.lazy.map { (name: $0.name, value: $0.value) })
  }

  /// `{"$headers":{"k":["v"]}}`, or nil when there is nothing to say.
  static func headersFrame(_ metadata: Metadata) -> [UInt8]? {
    let headers = Self.json(metadata)
    return headers.isEmpty ? nil : JSONValue.object(["$headers": .object(headers)]).serializedBytes
  }

  /// Metadata as `{"key":["v1","v2"]}`; binary values in base64; transport-level keys left out.
  static func json(_ metadata: Metadata) -> JSONObject {
    Self.group(
      metadata.lazy.map { key, value in
        switch value {
        case .string(let string): (name: key, value: string)
        case .binary(let bytes): (name: key, value: Data(bytes).base64EncodedString())
        }
      }
    )
  }

  /// Pairs grouped by key, in the order keys first appear; framing keys left out.
  private static func group(_ pairs: some Sequence<(name: String, value: String)>) -> JSONObject {
    var keys: [String] = []
    var values: [String: [JSONValue]] = [:]
    for (key, text) in pairs where !MetadataKeys.isFraming(key) {
      if values[key] == nil { keys.append(key) }
      values[key, default: []].append(.string(text))
    }
    return JSONObject(keys.map { (key: $0, value: .array(values[$0] ?? [])) })
  }
}

extension RPCError.Code {
  /// The numeric gRPC status code (google/rpc/code.proto).
  var rawValue: Int { Status.Code(self).rawValue }
}

internal import Foundation
internal import GRPCCore
internal import NIOHPACK
internal import SluiceCodec

/// The `$end` frame (PROTOCOL.md): a `google.rpc.Status` JSON object with the trailers.
enum StatusJSON {
  /// `{"$end":{"code":N,"message":"…","trailers":{"k":["v"]}}}`.
  static func endFrame(code: RPCError.Code?, message: String, trailers: Metadata) -> [UInt8] {
    Self.endFrame(code: code, message: message, trailers: Self.json(trailers))
  }

  /// The `$end` of an RPC on the engine: its error (nil: OK), with the error's metadata and the
  /// handler's `trailers`.
  static func endFrame(_ error: RPCError?, trailers: HPACKHeaders) -> [UInt8] {
    var object = Self.json(error?.metadata ?? [:])
    object.members += Self.json(trailers).members
    return Self.endFrame(code: error?.code, message: error?.message ?? "", trailers: object)
  }

  private static func endFrame(code: RPCError.Code?, message: String, trailers: JSONObject) -> [UInt8] {
    JSONValue.object(["$end": .object(Self.status(code: code, message: message, trailers: trailers))]).serializedBytes
  }

  /// A `google.rpc.Status` object: `{"code":N,"message":"…"}`, plus the trailers when there are any.
  static func status(code: RPCError.Code?, message: String, trailers: Metadata = [:]) -> JSONObject {
    Self.status(code: code, message: message, trailers: Self.json(trailers))
  }

  private static func status(code: RPCError.Code?, message: String, trailers: JSONObject) -> JSONObject {
    var status: JSONObject = ["code": .integer(code?.rawValue ?? 0)]
    if !message.isEmpty { status.members.append((key: "message", value: .string(message))) }
    if !trailers.isEmpty { status.members.append((key: "trailers", value: .object(trailers))) }
    return status
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

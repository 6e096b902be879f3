internal import Foundation
internal import GRPCCore
internal import SluiceCodec

/// The `$end` frame (PROTOCOL.md): a `google.rpc.Status` JSON object with the trailers.
enum StatusJSON {
  /// `{"$end":{"code":N,"message":"…","trailers":{"k":["v"]}}}`.
  static func endFrame(code: RPCError.Code?, message: String, trailers: Metadata) -> [UInt8] {
    JSONValue.object(["$end": .object(Self.status(code: code, message: message, trailers: trailers))]).serializedBytes
  }

  /// A `google.rpc.Status` object: `{"code":N,"message":"…"}`, plus the trailers when there are any.
  static func status(code: RPCError.Code?, message: String, trailers: Metadata = [:]) -> JSONObject {
    var status: JSONObject = ["code": .integer(code?.rawValue ?? 0)]
    if !message.isEmpty { status.members.append((key: "message", value: .string(message))) }
    let trailers = Self.json(trailers)
    if !trailers.isEmpty { status.members.append((key: "trailers", value: .object(trailers))) }
    return status
  }

  /// `{"$headers":{"k":["v"]}}`, or nil when there is nothing to say.
  static func headersFrame(_ metadata: Metadata) -> [UInt8]? {
    let headers = Self.json(metadata)
    return headers.isEmpty ? nil : JSONValue.object(["$headers": .object(headers)]).serializedBytes
  }

  /// Metadata as `{"key":["v1","v2"]}`; binary values in base64; transport-level keys left out.
  static func json(_ metadata: Metadata) -> JSONObject {
    var keys: [String] = []
    var values: [String: [JSONValue]] = [:]
    for (key, value) in metadata where !MetadataKeys.isFraming(key) {
      let text: String
      switch value {
      case .string(let string): text = string
      case .binary(let bytes): text = Data(bytes).base64EncodedString()
      }
      if values[key] == nil { keys.append(key) }
      values[key, default: []].append(.string(text))
    }
    return JSONObject(keys.map { (key: $0, value: .array(values[$0]!)) })
  }
}

extension RPCError.Code {
  /// The numeric gRPC status code (google/rpc/code.proto).
  var rawValue: Int { Status.Code(self).rawValue }
}

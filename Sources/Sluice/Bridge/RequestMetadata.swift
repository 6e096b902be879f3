internal import Foundation
internal import GRPCCore
internal import NIOHTTP1
internal import SluiceCodec

/// Request metadata and deadlines from what a JSON client can send: HTTP headers (WebSocket
/// handshake or HTTP request) and the `$metadata` / `$timeoutMs` frame.
enum RequestMetadata {
  /// `Authorization` and every `grpc-metadata-<key>` header (as `<key>`), plus the deadline from
  /// `grpc-timeout`.
  static func from(headers: HTTPHeaders) throws(RPCError) -> (metadata: Metadata, timeout: Duration?) {
    var metadata = Metadata()
    var timeout: Duration?
    for (name, value) in headers {
      let name = name.lowercased()
      if name == "authorization" {
        metadata.addString(value, forKey: "authorization")
      } else if name.hasPrefix("grpc-metadata-") {
        try Self.add(key: String(name.dropFirst("grpc-metadata-".count)), value: value, to: &metadata)
      } else if name == "grpc-timeout" {
        guard let parsed = Self.parseGRPCTimeout(value) else {
          throw RPCError(code: .invalidArgument, message: "invalid grpc-timeout header \"\(value)\"")
        }
        timeout = parsed
      }
    }
    return (metadata, timeout)
  }

  /// Adds the members of a `$metadata` object: `{"k":"v"}` or `{"k":["v1","v2"]}`.
  static func add(_ object: JSONObject, to metadata: inout Metadata) throws(RPCError) {
    for (key, value) in object.members {
      switch value {
      case .string(let string):
        try Self.add(key: key.lowercased(), value: string, to: &metadata)
      case .array(let values):
        for value in values {
          guard case .string(let string) = value else {
            throw RPCError(code: .invalidArgument, message: "$metadata.\(key) must hold strings")
          }
          try Self.add(key: key.lowercased(), value: string, to: &metadata)
        }
      default:
        throw RPCError(code: .invalidArgument, message: "$metadata.\(key) must be a string or an array of strings")
      }
    }
  }

  /// `$timeoutMs`: a non-negative number of milliseconds.
  static func timeout(fromMilliseconds value: JSONValue) throws(RPCError) -> Duration {
    guard case .number(let text) = value, let milliseconds = Double(text), milliseconds >= 0,
      milliseconds.isFinite
    else {
      throw RPCError(code: .invalidArgument, message: "$timeoutMs must be a non-negative number of milliseconds")
    }
    return .nanoseconds(Int64(min(milliseconds, 1e12) * 1_000_000))
  }

  /// The gRPC wire format of a timeout: up to 8 digits and a unit (H, M, S, m, u, n).
  static func parseGRPCTimeout(_ text: String) -> Duration? {
    guard let unit = text.last, text.count >= 2, text.count <= 9,
      let amount = Int64(text.dropLast()), amount >= 0
    else { return nil }
    switch unit {
    case "H": return .seconds(amount * 3600)
    case "M": return .seconds(amount * 60)
    case "S": return .seconds(amount)
    case "m": return .milliseconds(amount)
    case "u": return .microseconds(amount)
    case "n": return .nanoseconds(amount)
    default: return nil
    }
  }

  private static func add(key: String, value: String, to metadata: inout Metadata) throws(RPCError) {
    guard !key.isEmpty, !StatusJSON.isReserved(key) else {
      throw RPCError(code: .invalidArgument, message: "metadata key \"\(key)\" is reserved")
    }
    if key.hasSuffix("-bin") {
      guard let bytes = Data(base64Encoded: Self.padded(value)) else {
        throw RPCError(code: .invalidArgument, message: "metadata \(key) is not base64")
      }
      metadata.addBinary(Array(bytes), forKey: key)
    } else {
      metadata.addString(value, forKey: key)
    }
  }

  private static func padded(_ base64: String) -> String {
    let remainder = base64.utf8.count % 4
    return remainder == 0 ? base64 : base64 + String(repeating: "=", count: 4 - remainder)
  }
}

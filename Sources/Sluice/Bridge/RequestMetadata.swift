internal import Foundation
internal import GRPCCore
internal import NIOHPACK
internal import NIOHTTP1
internal import SluiceCodec

/// Request metadata and deadlines from what a JSON client can send: HTTP headers (WebSocket
/// handshake or HTTP request) and the `$metadata` / `$timeoutMs` frame.
enum RequestMetadata {
  /// `Authorization`, W3C trace context (`traceparent`, `tracestate`) and every
  /// `grpc-metadata-<key>` header (as `<key>`), plus the deadline from `grpc-timeout`.
  static func from(headers: HTTPHeaders) throws(RPCError) -> (metadata: Metadata, timeout: Duration?) {
    var metadata = Metadata()
    var timeout: Duration?
    for (name, value) in headers {
      let name = name.lowercased()
      if name == "authorization" {
        metadata.addString(value, forKey: "authorization")
      } else if name == "traceparent" || name == "tracestate" {
        try Self.add(key: name, value: value, to: &metadata)
      } else if name.hasPrefix("grpc-metadata-") {
        try Self.add(key: String(name.dropFirst("grpc-metadata-".count)), value: value, to: &metadata)
      } else if name == "grpc-timeout" {
        guard let parsed = GRPCTimeout.parse(value) else { throw GRPCErrors.invalidTimeout(value) }
        timeout = parsed
      }
    }
    return (metadata, timeout)
  }

  /// Adds the members of a `$metadata` object: `{"k":"v"}` or `{"k":["v1","v2"]}`, at most
  /// `maxBytes` of keys and values in all (the HTTP port's `--max-header-bytes`).
  static func add(_ object: JSONObject, to metadata: inout Metadata, maxBytes: Int) throws(RPCError) {
    var bytes = 0
    func add(key: String, value: String) throws(RPCError) {
      bytes += key.utf8.count + value.utf8.count
      guard bytes <= maxBytes else {
        throw GRPCErrors.metadataTooLarge(limit: maxBytes)
      }
      try Self.add(key: key.lowercased(), value: value, to: &metadata)
    }
    for (key, value) in object.members {
      switch value {
      case .string(let string):
        try add(key: key, value: string)
      case .array(let values):
        for value in values {
          guard case .string(let string) = value else {
            throw GRPCErrors.invalidMetadataValue(key)
          }
          try add(key: key, value: string)
        }
      default:
        throw GRPCErrors.invalidMetadataValue(key)
      }
    }
  }

  /// `$timeoutMs`: a non-negative number of milliseconds.
  static func timeout(fromMilliseconds value: JSONValue) throws(RPCError) -> Duration {
    guard case .number(let text) = value, let milliseconds = Double(text), milliseconds >= 0,
      milliseconds.isFinite
    else {
      throw GRPCErrors.invalidTimeoutMs
    }
    return .nanoseconds(Int64(min(milliseconds, 1e12) * 1_000_000))
  }

  /// Metadata as the header fields an engine handler reads (`ServerCall.metadata`): binary values
  /// in base64, as gRPC carries them on HTTP/2.
  static func headers(_ metadata: Metadata) -> HPACKHeaders {
    var headers = HPACKHeaders()
    headers.reserveCapacity(metadata.count)
    for (key, value) in metadata {
      switch value {
      case .string(let string): headers.add(name: key, value: string)
      case .binary(let bytes): headers.add(name: key, value: Data(bytes).base64EncodedString())
      }
    }
    return headers
  }

  private static func add(key: String, value: String, to metadata: inout Metadata) throws(RPCError) {
    guard MetadataKeys.isValid(key) else {
      throw GRPCErrors.invalidMetadataKey(key)
    }
    guard !MetadataKeys.isReservedInRequests(key) else {
      throw GRPCErrors.reservedMetadataKey(key)
    }
    if key.hasSuffix("-bin") {
      guard let bytes = Base64.decode(value) else {
        throw GRPCErrors.metadataNotBase64(key)
      }
      metadata.addBinary(bytes, forKey: key)
    } else {
      guard value.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else {
        throw GRPCErrors.metadataNotPrintable(key)
      }
      metadata.addString(value, forKey: key)
    }
  }
}

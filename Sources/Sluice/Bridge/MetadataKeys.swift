/// Which metadata keys a client may send and the gateway may pass on, in one place for every
/// transport.
enum MetadataKeys {
  /// The prefix of the gateway's own bookkeeping keys (`sluice-rpc-id`, `sluice-transport`):
  /// never accepted from a client, on any transport, so that none can be forged.
  static let gatewayPrefix = "sluice-"

  /// Hop-by-hop HTTP header names (RFC 9110 § 7.6.1, and `host`): they describe one connection
  /// and never travel as gRPC metadata.
  private static let hopByHop: Set<String> = ["connection", "host", "upgrade", "transfer-encoding", "keep-alive"]

  /// Whether `key` (lowercase) names a hop-by-hop HTTP header, or a proxy's own (`proxy-*`, `te`).
  static func isHopByHop(_ key: String) -> Bool {
    Self.hopByHop.contains(key) || key == "te" || key.hasPrefix("proxy-")
  }

  /// Whether `key` is a gRPC metadata key: one or more of `0-9 a-z _ . -` (gRPC's PROTOCOL-HTTP2).
  static func isValid(_ key: String) -> Bool {
    !key.isEmpty
      && key.utf8.allSatisfy { byte in
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
          || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-")
      }
  }

  /// Keys that belong to HTTP/2 or gRPC framing rather than to the application: never shown to
  /// JSON clients as response metadata, never accepted from them.
  static func isFraming(_ key: String) -> Bool {
    key.hasPrefix(":") || key.hasPrefix("grpc-") || key == "content-type" || key == "te" || key == "user-agent"
  }

  /// Keys a JSON client may not set: framing, hop-by-hop and the gateway's own.
  static func isReservedInRequests(_ key: String) -> Bool {
    Self.isFraming(key) || Self.hopByHop.contains(key) || key.hasPrefix("proxy-") || key.hasPrefix(Self.gatewayPrefix)
  }
}

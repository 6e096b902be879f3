internal import GRPCCore

/// Passes serialized protobuf messages through gRPC untouched: the bridge's JSON codec produces
/// and consumes the wire bytes itself, so no generated message type is involved.
struct RawMessageSerializer: MessageSerializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes {
    Bytes(message)
  }
}

/// The counterpart of `RawMessageSerializer`.
struct RawMessageDeserializer: MessageDeserializer {
  func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
    serializedMessageBytes.withUnsafeBytes { Array($0) }
  }
}

internal import GRPCCore
internal import NIOHPACK
internal import SluiceCodec

/// The `details` of a serialized `google.rpc.Status` (field 3, each a `google.protobuf.Any` with
/// `type_url` = 1 and `value` = 2): Connect's error JSON and every JSON status (`StatusJSON`).
///
/// Written by hand: the gateway has no generated `google.rpc.Status`, and the walk is three fields
/// of protobuf's wire format. The bytes come from a service or an upstream, so every length is
/// checked and anything malformed yields no more details rather than a trap.
enum StatusDetails {
  /// The serialized statuses of a call's `grpc-status-details-bin`: in its error's metadata (binary,
  /// or base64 text) and in its `trailers` (base64, where a proxied call's arrives).
  static func statuses(_ metadata: Metadata, _ trailers: HPACKHeaders = [:]) -> [[UInt8]] {
    var statuses: [[UInt8]] = []
    for entry in metadata["grpc-status-details-bin"] {
      switch entry {
      case .binary(let value): statuses.append(value)
      case .string(let text): statuses.append(Base64.decode(text) ?? [])
      }
    }
    for value in trailers["grpc-status-details-bin"] { statuses.append(Base64.decode(value) ?? []) }
    return statuses
  }

  static func anys(in bytes: [UInt8]) -> [(type: String, value: [UInt8])] {
    var result: [(String, [UInt8])] = []
    for (number, field) in Self.fields(bytes[...]) where number == 3 {
      var type = ""
      var value: [UInt8] = []
      for (inner, content) in Self.fields(field) {
        if inner == 1 { type = String(decoding: content, as: UTF8.self) }
        if inner == 2 { value = Array(content) }
      }
      result.append((type, value))
    }
    return result
  }

  /// The length-delimited fields of a message, in order; stops at the first malformed byte.
  private static func fields(_ bytes: ArraySlice<UInt8>) -> [(Int, ArraySlice<UInt8>)] {
    var fields: [(Int, ArraySlice<UInt8>)] = []
    var index = bytes.startIndex
    func varint() -> UInt64? {
      var value: UInt64 = 0
      var shift: UInt64 = 0
      while index < bytes.endIndex, shift < 64 {
        let byte = bytes[index]
        index += 1
        value |= UInt64(byte & 0x7F) << shift
        if byte & 0x80 == 0 { return value }
        shift += 7
      }
      return nil
    }
    while index < bytes.endIndex {
      guard let tag = varint() else { break }
      let number = Int(truncatingIfNeeded: tag >> 3)
      switch tag & 7 {
      case 0:
        guard varint() != nil else { return fields }
      case 1:
        guard bytes.endIndex - index >= 8 else { return fields }
        index += 8
      case 5:
        guard bytes.endIndex - index >= 4 else { return fields }
        index += 4
      case 2:
        guard let length = varint(), length <= UInt64(bytes.endIndex - index) else { return fields }
        let end = index + Int(length)
        fields.append((number, bytes[index..<end]))
        index = end
      default:
        return fields
      }
    }
    return fields
  }
}

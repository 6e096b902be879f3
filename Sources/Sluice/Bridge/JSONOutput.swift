internal import GRPCCore
internal import NIOHTTP1
public import SluiceCodec

/// How JSON answers are written, by name: the same words for the gateway (`--json-output`) and
/// for one request (the `Sluice-JSON-Output` header, over the gateway's). Envoy's transcoder
/// (`print_options`) and grpc-gateway (`MarshalOptions`) offer the same three choices.
///
/// - `proto-names` / `json-names`: fields under their .proto names, or lowerCamelCase (the default)
/// - `enum-numbers` / `enum-names`: enum values as numbers, or by name (the default)
/// - `omit-defaults` / `emit-defaults`: fields at their default value left out, or written (the
///   default)
extension JSONCodec.EncodingOptions {
  /// The header a request names its own options with.
  static let headerName = "sluice-json-output"

  /// The words, comma- or space-separated, applied in order over these options.
  public mutating func apply(words text: String) throws(JSONOutputError) {
    for word in text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }) {
      switch word.lowercased() {
      case "proto-names": self.preserveProtoNames = true
      case "json-names": self.preserveProtoNames = false
      case "enum-numbers": self.enumsAsIntegers = true
      case "enum-names": self.enumsAsIntegers = false
      case "omit-defaults": self.emitDefaultValues = false
      case "emit-defaults": self.emitDefaultValues = true
      default:
        throw JSONOutputError(
          "'\(word.prefix(64))' is not a JSON output option (proto-names, json-names, enum-numbers, enum-names, omit-defaults, emit-defaults)"
        )
      }
    }
  }
}

/// A JSON output option that is not one of the words.
public struct JSONOutputError: Error, CustomStringConvertible {
  public let description: String

  init(_ description: String) {
    self.description = description
  }
}

extension JSONBridge {
  /// This bridge, writing JSON as the request's `Sluice-JSON-Output` header asks (itself when the
  /// request has none); `INVALID_ARGUMENT` naming a word that is not an option.
  func forRequest(_ headers: HTTPHeaders) throws(RPCError) -> JSONBridge {
    let values = headers[JSONCodec.EncodingOptions.headerName]
    guard !values.isEmpty else { return self }
    var options = self.codec.encoding
    for value in values {
      do {
        try options.apply(words: value)
      } catch {
        throw GRPCErrors.invalidJSONOutput(error.description)
      }
    }
    return options == self.codec.encoding ? self : self.writing(options)
  }
}

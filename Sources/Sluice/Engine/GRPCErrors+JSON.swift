internal import GRPCCore
internal import SluiceCodec

/// The errors of JSON translation and of request metadata, shared by every JSON front end.
extension GRPCErrors {
  /// A JSON front end's unary or server-streaming call that ended without its one request
  /// message, or sent more: `expectedOneMessage`'s wording, as the client's mistake.
  static func expectedOneJSONMessage(got count: Int) -> RPCError {
    RPCError(code: .invalidArgument, message: Self.expectedOneMessage(got: count).message)
  }

  /// A `Sluice-JSON-Output` header with a word that is not an option.
  static func invalidJSONOutput(_ why: String) -> RPCError {
    RPCError(code: .invalidArgument, message: "Sluice-JSON-Output: \(why)")
  }

  /// A JSON document that does not parse, or is over the codec's limits.
  static func invalidJSON(_ error: CodecError) -> RPCError {
    RPCError(code: error.code == .tooLarge ? .resourceExhausted : .invalidArgument, message: error.message)
  }

  /// A JSON request message that does not translate to the method's input type (`typeName`).
  static func invalidJSONMessage(_ typeName: String, _ detail: String) -> RPCError {
    RPCError(code: .invalidArgument, message: "invalid \(typeName): \(detail)")
  }

  /// A response message from the service that does not parse as its output type (`typeName`).
  static func invalidResponse(_ typeName: String) -> RPCError {
    RPCError(code: .internalError, message: "the service sent an invalid \(typeName)")
  }

  /// `$metadata` whose keys and values are over `--max-header-bytes` in all.
  static func metadataTooLarge(limit: Int) -> RPCError {
    RPCError(
      code: .resourceExhausted,
      message: "$metadata is larger than the \(limit)-byte limit (--max-header-bytes)"
    )
  }

  /// A `$metadata` member that is neither a string nor an array of strings.
  static func invalidMetadataValue(_ key: String) -> RPCError {
    RPCError(code: .invalidArgument, message: "$metadata.\(key) must be a string or an array of strings")
  }

  /// A `$timeoutMs` that is not a non-negative number.
  static let invalidTimeoutMs = RPCError(
    code: .invalidArgument,
    message: "$timeoutMs must be a non-negative number of milliseconds"
  )

  /// A metadata key with characters gRPC does not allow.
  static func invalidMetadataKey(_ key: String) -> RPCError {
    RPCError(
      code: .invalidArgument,
      message: "metadata key \"\(key)\" is not valid: gRPC metadata keys are made of 0-9 a-z _ . -"
    )
  }

  /// A metadata key a client may not set (`grpc-*` and the HTTP/2 framing headers).
  static func reservedMetadataKey(_ key: String) -> RPCError {
    RPCError(code: .invalidArgument, message: "metadata key \"\(key)\" is reserved")
  }

  /// A `-bin` metadata value that is not base64.
  static func metadataNotBase64(_ key: String) -> RPCError {
    RPCError(code: .invalidArgument, message: "metadata \(key) is not base64")
  }

  /// A text metadata value with bytes outside printable ASCII.
  static func metadataNotPrintable(_ key: String) -> RPCError {
    RPCError(
      code: .invalidArgument,
      message: "metadata \(key): text values are printable ASCII (binary values go in keys ending in -bin)"
    )
  }
}

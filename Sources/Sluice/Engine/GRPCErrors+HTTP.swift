internal import GRPCCore

/// The errors of the HTTP/1.1 JSON front end (unary JSON bodies and NDJSON streams).
extension GRPCErrors {
  /// A request whose `Content-Type` is not JSON or NDJSON.
  static func notJSONContentType(_ contentType: String) -> RPCError {
    RPCError(
      code: .invalidArgument,
      message: "Content-Type \(contentType) is not JSON: send application/json (or application/x-ndjson for streams)"
    )
  }

  /// An NDJSON line that is a WebSocket control frame (`key` such as `$end`).
  static func controlFrameOverHTTP(_ key: String) -> RPCError {
    RPCError(
      code: .invalidArgument,
      message: "control frames such as \(key) are WebSocket-only: over HTTP, use headers and end the body"
    )
  }

  /// An NDJSON line that failed with `error`, which gets the line's number.
  static func ndjsonLine(_ number: Int, _ error: RPCError) -> RPCError {
    RPCError(code: error.code, message: "line \(number): \(error.message)")
  }

  /// A request HTTP/1.1 itself rejects after its call's response began.
  static func malformedHTTPRequest(_ error: some Error) -> RPCError {
    RPCError(code: .invalidArgument, message: "malformed HTTP request: \(error)")
  }

  /// A single-response method whose service sent a second response.
  static let extraResponse = RPCError(
    code: .internalError,
    message: "the service sent more than one response to a single-response method"
  )

  /// A single-response method whose service ended the call without a response.
  static let missingResponse = RPCError(code: .internalError, message: "the service ended the call without a response")

  /// A request body in an encoding the gateway does not read (HTTP 415).
  static func unsupportedBodyEncoding(_ encoding: String, accepted: String) -> RPCError {
    RPCError(
      code: .invalidArgument,
      message: "Content-Encoding \"\(encoding)\" is not supported here: send \(accepted)"
    )
  }
}

internal import GRPCCore

/// The errors of gRPC-Web requests (PROTOCOL-WEB), on either port.
extension GRPCErrors {
  /// A gRPC-Web request that is not a POST.
  static func gRPCWebNotPOST(_ method: some StringProtocol) -> RPCError {
    RPCError(code: .unimplemented, message: "gRPC-Web calls are POST requests, not \(method)")
  }

  /// A gRPC-Web content type with a codec the gateway does not speak.
  static func gRPCWebCodec(_ contentType: String) -> RPCError {
    RPCError(
      code: .unimplemented,
      message:
        "\(contentType) is not supported: send application/grpc-web(+proto), application/grpc-web+json or their -text forms"
    )
  }

  /// A request frame flagged as the trailer frame, which only responses carry.
  static let trailerFrameInRequest = RPCError(
    code: .internalError,
    message: "a gRPC-Web request carries a trailer frame (flag 0x80): only responses have one"
  )

  /// A `application/grpc-web-text` body that is not base64.
  static let notBase64Body = RPCError(
    code: .internalError,
    message: "the application/grpc-web-text body is not base64"
  )

  /// A JSON codec (`+json`) asked of a method without descriptors (an upstream's, without
  /// `--descriptor-set` or `--upstream-reflection`).
  static func jsonNeedsDescriptors(_ path: some StringProtocol) -> RPCError {
    RPCError(
      code: .unimplemented,
      message:
        "\(path) has no descriptors, so its messages cannot be JSON: use application/grpc-web+proto, or give the gateway descriptors (--descriptor-set, --upstream-reflection)"
    )
  }
}

/// The errors of Connect requests (connectrpc.com's protocol), on either port.
extension GRPCErrors {
  /// A Connect request that is not a POST.
  static func connectNotPOST(_ method: some StringProtocol) -> RPCError {
    RPCError(code: .unimplemented, message: "Connect calls are POST requests, not \(method)")
  }

  /// A Connect content type with a codec the gateway does not speak.
  static func connectCodec(_ contentType: String) -> RPCError {
    RPCError(
      code: .unimplemented,
      message: "\(contentType) is not supported: send application/connect+proto or application/connect+json"
    )
  }

  /// A request body encoding (`Content-Encoding`, `Connect-Content-Encoding`) the gateway cannot read.
  static func unsupportedContentEncoding(_ encoding: some StringProtocol, header: String) -> RPCError {
    RPCError(code: .unimplemented, message: "\(header) \"\(encoding)\" is not supported; use identity or gzip")
  }

  /// A `Connect-Timeout-Ms` that is not one to ten digits.
  static func invalidConnectTimeout(_ value: some StringProtocol) -> RPCError {
    RPCError(code: .invalidArgument, message: "invalid Connect-Timeout-Ms \"\(value)\": one to ten digits")
  }

  /// A streaming method called with Connect's unary content type.
  static func connectUnaryForStreamingMethod(_ path: some StringProtocol) -> RPCError {
    RPCError(
      code: .unimplemented,
      message: "\(path) is a streaming method: call it with application/connect+proto or application/connect+json"
    )
  }

  /// A request envelope with flags other than compressed.
  static func connectRequestFlags(_ flags: UInt8) -> RPCError {
    RPCError(
      code: .invalidArgument,
      message: "a Connect request envelope has flags \(flags): only 0x01 (compressed) is allowed")
  }

  /// A Connect GET whose query does not describe a call.
  static func connectGetQuery(_ problem: String) -> RPCError {
    RPCError(code: .invalidArgument, message: "Connect GET: \(problem) (?connect=v1&encoding=proto|json&message=…)")
  }

  /// A GET for a method whose descriptor does not declare it free of side effects.
  static func connectGetNotAllowed(_ path: some StringProtocol) -> RPCError {
    RPCError(
      code: .unimplemented,
      message:
        "\(path) cannot be called with GET: only methods with idempotency_level = NO_SIDE_EFFECTS can (use POST)"
    )
  }
}

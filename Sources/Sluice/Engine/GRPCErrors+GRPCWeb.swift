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

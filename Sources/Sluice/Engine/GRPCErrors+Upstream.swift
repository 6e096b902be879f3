internal import GRPCCore

/// The errors of proxied calls: what the gateway says of an upstream, and what it passes on.
extension GRPCErrors {
  /// An upstream that cannot take the call (`detail`: unreachable, its connection lost or closing).
  static func upstreamUnavailable(_ service: String, _ detail: String) -> RPCError {
    RPCError(code: .unavailable, message: "upstream \(service): \(detail)")
  }

  /// An upstream response the gateway cannot pass on (`detail`: a bad message, headers too large).
  static func upstreamFailed(_ service: String, _ detail: String) -> RPCError {
    RPCError(code: .internalError, message: "upstream \(service): \(detail)")
  }

  /// An upstream stream reset with HTTP/2 error `http2Code`, as gRPC's mapping has it (`code`).
  static func upstreamReset(_ service: String, http2Code: UInt32, code: RPCError.Code) -> RPCError {
    RPCError(code: code, message: "upstream \(service): stream reset (HTTP/2 error \(http2Code))")
  }

  /// An upstream that answered an HTTP status other than 200, as gRPC's HTTP mapping has it (`code`).
  static func upstreamHTTPStatus(_ status: String, code: RPCError.Code) -> RPCError {
    RPCError(code: code, message: "the upstream answered HTTP \(status)")
  }

  /// An upstream response whose content-type is not gRPC (nil: none).
  static func upstreamNotGRPC(contentType: String?) -> RPCError {
    RPCError(
      code: .unknown,
      message: "the upstream's response is not gRPC (content-type \(contentType ?? "missing"))"
    )
  }

  /// An upstream response that ended without `grpc-status`.
  static let upstreamMissingStatus = RPCError(code: .unknown, message: "the upstream's response has no grpc-status")

  /// The upstream's own status, passed on unchanged.
  static func upstreamStatus(_ code: RPCError.Code, _ message: String) -> RPCError {
    RPCError(code: code, message: message)
  }
}

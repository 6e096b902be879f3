internal import GRPCCore

/// The engine's errors, named, with one wording each for every transport.
enum GRPCErrors {
  /// No hosted method at `path` (`/pkg.Service/Method`).
  static func unknownMethod(_ path: some StringProtocol) -> RPCError {
    RPCError(code: .unimplemented, message: "unknown method \(path)")
  }

  /// A message over `--max-message-bytes`, received from the client or sent by the service.
  static func messageTooLarge(_ bytes: Int, limit: Int, received: Bool) -> RPCError {
    let direction = received ? "request" : "response"
    return RPCError(
      code: .resourceExhausted,
      message: "\(direction) message of \(bytes) bytes is over the limit of \(limit) (--max-message-bytes)"
    )
  }

  /// A JSON front end's request (`what`: a body, an NDJSON line, a WebSocket message) over
  /// `--max-message-bytes`, refused before it is read whole.
  static func requestTooLarge(_ what: String, limit: Int) -> RPCError {
    RPCError(
      code: .resourceExhausted,
      message: "request too large: \(what) is larger than the \(limit)-byte limit (--max-message-bytes)"
    )
  }

  /// A `grpc-encoding` the gateway does not decode.
  static func unsupportedEncoding(_ encoding: some StringProtocol) -> RPCError {
    RPCError(code: .unimplemented, message: "grpc-encoding \"\(encoding)\" is not supported; use identity or gzip")
  }

  /// A message marked compressed on a call without `grpc-encoding`.
  static let compressedWithoutEncoding = RPCError(
    code: .internalError,
    message: "a message is marked compressed but the request has no grpc-encoding"
  )

  /// An upstream's response message marked compressed without `grpc-encoding` in its headers.
  static let responseCompressedWithoutEncoding = RPCError(
    code: .internalError,
    message: "a response message is marked compressed but the response has no grpc-encoding"
  )

  /// A message flagged compressed that does not inflate (corrupt or cut short).
  static func undecodableCompression(_ reason: String) -> RPCError {
    RPCError(code: .internalError, message: "a compressed message could not be inflated (gzip): \(reason)")
  }

  /// A request message that is not valid protobuf for the method's input type.
  static func invalidMessage(_ typeName: String) -> RPCError {
    RPCError(code: .invalidArgument, message: "the request is not a valid \(typeName)")
  }

  /// A unary or server-streaming call that ended without its one request message, or sent more.
  static func expectedOneMessage(got count: Int) -> RPCError {
    RPCError(
      code: .internalError,
      message: count == 0 ? "the call ended without its request message" : "the call sent more than one request message"
    )
  }

  /// A request stream that ended partway through a length-prefixed message.
  static let truncatedMessage = RPCError(code: .internalError, message: "the request ended inside a message")

  /// An upstream's response that ended (its trailers came) partway through a message: the
  /// message is lost, so the upstream's status cannot stand.
  static let truncatedResponse = RPCError(code: .internalError, message: "the response ended inside a message")

  /// A response message the service gave that could not be serialized.
  static func unserializableResponse(_ error: any Error) -> RPCError {
    RPCError(code: .internalError, message: "could not serialize the response: \(error)")
  }

  /// A gRPC request whose `:method` is not POST.
  static func methodNotPOST(_ method: some StringProtocol) -> RPCError {
    RPCError(code: .internalError, message: "gRPC requires :method POST, not \"\(method)\"")
  }

  /// A gRPC request whose `content-type` is not `application/grpc`.
  static func invalidContentType(_ contentType: some StringProtocol) -> RPCError {
    RPCError(code: .invalidArgument, message: "invalid gRPC request content-type \"\(contentType)\"")
  }

  /// A `grpc-timeout` header that does not parse, on any transport.
  static func invalidTimeout(_ value: some StringProtocol) -> RPCError {
    RPCError(code: .invalidArgument, message: "invalid grpc-timeout header \"\(value)\"")
  }

  /// `--max-concurrent-rpcs` RPCs already run.
  static func tooManyRPCs(limit: Int) -> RPCError {
    RPCError(
      code: .resourceExhausted,
      message: "the gateway is running its limit of \(limit) RPCs (--max-concurrent-rpcs); retry later"
    )
  }

  /// The pool of calls let in without a token (health probes, with `--require-bearer`) is full.
  static func tooManyProbes(limit: Int) -> RPCError {
    RPCError(
      code: .resourceExhausted,
      message:
        "the gateway is running its limit of \(limit) calls without a token (health probes: a twentieth of --max-concurrent-rpcs, at least 16); retry later"
    )
  }

  /// A request message refused because the gateway already holds `--max-buffered-request-bytes`
  /// of unfinished requests.
  static func requestBufferFull(limit: Int) -> RPCError {
    RPCError(
      code: .resourceExhausted,
      message:
        "the gateway holds its limit of \(limit) bytes of unfinished requests (--max-buffered-request-bytes); retry later"
    )
  }

  /// A request (`what`: a body, an NDJSON line, a message) that did not arrive within `--body-timeout`.
  static func bodyTimedOut(_ what: String, after timeout: Duration) -> RPCError {
    RPCError(
      code: .deadlineExceeded,
      message: "\(what) did not arrive within \(timeout.components.seconds) s of its start (--body-timeout)"
    )
  }

  /// No `authorization` header where bearer tokens are required.
  static let missingCredentials = RPCError(
    code: .unauthenticated,
    message: "this gateway requires authorization: Bearer <token>"
  )

  /// A request with more than one `authorization`: which one counts would depend on who reads it.
  static let duplicateCredentials = RPCError(
    code: .unauthenticated,
    message: "the request has more than one authorization header; send one"
  )

  /// A bearer token that is not one of the allowed ones.
  static let invalidCredentials = RPCError(code: .unauthenticated, message: "the bearer token is not valid")

  /// A streaming call cut short by a graceful shutdown.
  static let shuttingDown = RPCError(code: .unavailable, message: "Sluice is shutting down; retry on another instance.")

  /// The call's `grpc-timeout` ran out.
  static let deadlineExceeded = RPCError(code: .deadlineExceeded, message: "the call's deadline (grpc-timeout) passed")

  /// The client reset the stream or its connection went away.
  static let cancelled = RPCError(code: .cancelled, message: "the client cancelled the call")

  /// A health check for a service the gateway does not know.
  static func unknownHealthService(_ service: String) -> RPCError {
    RPCError(code: .notFound, message: "unknown service \(service)")
  }
}

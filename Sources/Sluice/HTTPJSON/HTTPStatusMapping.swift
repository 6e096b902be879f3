internal import GRPCCore
internal import NIOHTTP1

extension RPCError.Code {
  /// The HTTP status for an RPC that failed before its response started: the mapping gRPC
  /// gateways use (google.rpc.Code's documented HTTP equivalents, 499 for CANCELLED).
  var httpStatus: HTTPResponseStatus {
    switch self {
    case .cancelled: .custom(code: 499, reasonPhrase: "Client Closed Request")
    case .unknown, .internalError, .dataLoss: .internalServerError
    case .invalidArgument, .failedPrecondition, .outOfRange: .badRequest
    case .deadlineExceeded: .gatewayTimeout
    case .notFound: .notFound
    case .alreadyExists, .aborted: .conflict
    case .permissionDenied: .forbidden
    case .unauthenticated: .unauthorized
    case .resourceExhausted: .tooManyRequests
    case .unimplemented: .notImplemented
    case .unavailable: .serviceUnavailable
    default: .internalServerError
    }
  }
}

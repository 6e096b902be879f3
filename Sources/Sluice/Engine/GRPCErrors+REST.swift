internal import GRPCCore

/// The errors of REST requests (routes from `google.api.http` rules).
extension GRPCErrors {
  /// A body that does not fit the route's `body` rule.
  static func restBody(_ why: String) -> RPCError {
    RPCError(code: .invalidArgument, message: why)
  }

  /// A query parameter (or a path variable) that does not name a field it may set, or whose value
  /// does not fit the field.
  static func restQuery(_ why: String) -> RPCError {
    RPCError(code: .invalidArgument, message: why)
  }

  /// A path whose variable is not well percent-encoded.
  static func restPath(_ why: String) -> RPCError {
    RPCError(code: .invalidArgument, message: why)
  }

  /// A path that REST routes know, with an HTTP method none of them takes.
  static func restMethodNotAllowed(_ method: some StringProtocol, allowed: [String]) -> RPCError {
    RPCError(
      code: .unimplemented,
      message: "\(method) is not a method of this path: it takes \(allowed.joined(separator: ", "))"
    )
  }
}

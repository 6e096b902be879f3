internal import Foundation
public import GRPCCore

/// Refuses every RPC that does not carry `authorization: Bearer <token>` with one of the allowed
/// tokens, with `UNAUTHENTICATED`, before any service code runs.
///
/// It sits on both servers, so it covers every transport in one place: native gRPC, and the
/// WebSocket and HTTP JSON front ends (whose headers, `$metadata` and `bearer.` subprotocol become
/// the same request metadata). Tokens are compared in constant time and never logged.
public struct BearerAuthenticator: ServerInterceptor {
  private let tokens: [[UInt8]]

  /// Creates an authenticator; `tokens` must not be empty.
  public init(tokens: some Sequence<String>) {
    self.tokens = tokens.map { Array($0.utf8) }
    precondition(!self.tokens.isEmpty, "BearerAuthenticator needs at least one token")
  }

  /// Reads tokens: one per line (or separated by commas), blank lines and lines starting with
  /// `#` ignored.
  public static func tokens(fromList text: String) -> [String] {
    text.split(whereSeparator: { $0.isNewline || $0 == "," })
      .map { $0.trimmingCharacters(in: .whitespaces) }
      .filter { !$0.isEmpty && !$0.hasPrefix("#") }
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard let header = request.metadata[stringValues: "authorization"].first(where: { _ in true }) else {
      throw RPCError(code: .unauthenticated, message: "this gateway requires authorization: Bearer <token>")
    }
    guard self.isAllowed(header) else {
      throw RPCError(code: .unauthenticated, message: "the bearer token is not valid")
    }
    return try await next(request, context)
  }

  private func isAllowed(_ header: String) -> Bool {
    let scheme = "bearer "
    guard header.utf8.count > scheme.utf8.count, header.lowercased().hasPrefix(scheme) else { return false }
    let presented = Array(header.utf8.dropFirst(scheme.utf8.count))
    // Every token is compared in full, whatever matched, so timing tells nothing about tokens.
    var allowed = false
    for token in self.tokens {
      allowed = Self.constantTimeEqual(token, presented) || allowed
    }
    return allowed
  }

  private static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for (x, y) in zip(a, b) { difference |= x ^ y }
    return difference == 0
  }
}

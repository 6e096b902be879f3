internal import Crypto
internal import Foundation

/// `--require-bearer`: `RPCEngine` refuses every RPC that does not carry `authorization: Bearer
/// <token>` with one of the allowed tokens, with `UNAUTHENTICATED`, before any service code runs.
///
/// The engine asks it for every transport in one place: native gRPC, and the WebSocket and HTTP
/// JSON front ends (whose headers, `$metadata` and `bearer.` subprotocol become the same request
/// metadata); the HTTP port's `/metrics` asks it too. Tokens are never logged,
/// and compared by their SHA-256 digests in constant time, so that neither a token's bytes nor its
/// length show in how long a refusal takes.
public struct BearerAuthenticator: Sendable {
  private let digests: [SHA256.Digest]

  /// Creates an authenticator; `tokens` must not be empty.
  public init(tokens: some Sequence<String>) {
    self.digests = tokens.map { SHA256.hash(data: Array($0.utf8)) }
    precondition(!self.digests.isEmpty, "BearerAuthenticator needs at least one token")
  }

  /// Reads tokens: one per line (or separated by commas), blank lines and lines starting with
  /// `#` ignored.
  public static func tokens(fromList text: String) -> [String] {
    text.split(whereSeparator: { $0.isNewline || $0 == "," })
      .map { $0.trimmingCharacters(in: .whitespaces) }
      .filter { !$0.isEmpty && !$0.hasPrefix("#") }
  }

  /// Whether an `Authorization` header value carries one of the tokens.
  func allows(authorization header: String?) -> Bool {
    let scheme = "bearer "
    guard let header, header.utf8.count > scheme.utf8.count, header.lowercased().hasPrefix(scheme) else {
      return false
    }
    let presented = SHA256.hash(data: Array(header.utf8.dropFirst(scheme.utf8.count)))
    // Every digest is compared in full, whatever matched (swift-crypto's digest equality is
    // constant-time), so timing tells nothing about the tokens.
    var allowed = false
    for digest in self.digests {
      allowed = (digest == presented) || allowed
    }
    return allowed
  }
}

internal import NIOHTTP1

/// Cross-origin headers for the HTTP JSON calls (PROTOCOL.md: the same `--allowed-origin` list as
/// the WebSocket side). The origin itself is checked by `OriginPolicy` before any of this is used.
enum CORS {
  /// Methods a preflight may ask for.
  static let allowedMethods = "GET, POST, PUT, OPTIONS"

  /// How long a browser may cache a preflight answer, in seconds.
  static let maxAge = "600"

  /// Headers for an answer to a request from `origin`: `Vary: Origin` always (whether the answer
  /// is allowed across origins depends on it, so caches must keep answers apart), and the allowed
  /// origin when the request has one.
  static func headers(origin: String?) -> HTTPHeaders {
    guard let origin else { return ["Vary": "Origin"] }
    return ["Access-Control-Allow-Origin": origin, "Vary": "Origin"]
  }

  /// Tells browsers to take a response's `Content-Type` as given, never to sniff another (a JSON
  /// error body or a file rendered as HTML).
  static let noSniff = (name: "X-Content-Type-Options", value: "nosniff")

  /// The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`): every request
  /// header is allowed, because any `grpc-metadata-<key>` header is metadata.
  static func preflightHeaders(origin: String?, request: HTTPHeaders) -> HTTPHeaders {
    var headers = Self.headers(origin: origin)
    headers.add(name: "Access-Control-Allow-Methods", value: Self.allowedMethods)
    if let requested = request.first(name: "Access-Control-Request-Headers") {
      headers.add(name: "Access-Control-Allow-Headers", value: requested)
    }
    headers.add(name: "Access-Control-Max-Age", value: Self.maxAge)
    return headers
  }

  /// Lets a page's script read the response headers it was given (metadata as
  /// `grpc-metadata-<key>`); `*` is not used, so this also holds for credentialed requests.
  static func exposing(_ names: [String], in headers: inout HTTPHeaders) {
    guard headers.contains(name: "Access-Control-Allow-Origin"), !names.isEmpty else { return }
    headers.add(name: "Access-Control-Expose-Headers", value: names.joined(separator: ", "))
  }
}

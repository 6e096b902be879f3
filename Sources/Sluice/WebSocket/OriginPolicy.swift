/// Which browser origins may open sessions (PROTOCOL.md): requests without `Origin` (command-line
/// tools) always; otherwise an origin in the allow list, or, when the list is empty, an origin
/// whose host and port are the request's own `Host`.
struct OriginPolicy: Sendable {
  let allowedOrigins: Set<String>

  init(allowedOrigins: [String]) {
    self.allowedOrigins = Set(allowedOrigins.map { Self.normalized($0) })
  }

  func allows(origin: String?, host: String?) -> Bool {
    guard let origin else { return true }
    let normalized = Self.normalized(origin)
    if !self.allowedOrigins.isEmpty {
      return self.allowedOrigins.contains("*") || self.allowedOrigins.contains(normalized)
    }
    guard let host, let schemeEnd = normalized.firstRange(of: "://") else { return false }
    return normalized[schemeEnd.upperBound...] == host.lowercased()
  }

  private static func normalized(_ origin: String) -> String {
    var origin = origin.lowercased()
    while origin.hasSuffix("/") { origin.removeLast() }
    return origin
  }
}

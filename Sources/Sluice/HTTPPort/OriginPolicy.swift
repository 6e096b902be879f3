internal import GRPCCore
internal import NIOCore
internal import NIOHTTP1

/// Which browser requests the HTTP port serves (PROTOCOL.md), for WebSocket handshakes and HTTP
/// requests alike.
///
/// - Requests that carry no sign of a browser (no `Origin`, no `Sec-Fetch-Site`: curl, websocat,
///   scripts) are always served.
/// - With an allow list (`--allowed-origin`), a browser request's `Origin` must be on it (`*`
///   allows any).
/// - Without one, the page must be the gateway's own: its `Origin`, when sent, must be
///   `http(s)://<Host>` with the scheme the port serves (https under TLS), and the `Host` must be
///   a name that cannot be rebound to this machine by someone else's DNS: an IP address,
///   `localhost`, or a name given with `--allowed-host`. That stops DNS rebinding, where a page on
///   `evil.example` has its name re-pointed at the gateway and then calls it same-origin.
struct OriginPolicy: Sendable {
  let allowedOrigins: Set<String>
  let allowedHosts: Set<String>
  let scheme: String

  init(allowedOrigins: [String], allowedHosts: [String] = [], usesTLS: Bool = false) {
    self.allowedOrigins = Set(allowedOrigins.map { Self.normalized($0) })
    self.allowedHosts = Set(allowedHosts.map { $0.lowercased() })
    self.scheme = usesTLS ? "https" : "http"
  }

  /// The 403 answer for a request from a page that may not use the gateway, or nil to serve it.
  func refusal(_ headers: HTTPHeaders, extra: HTTPHeaders = [:]) -> HTTPStatusResponse? {
    let origin = headers.first(name: "Origin")
    guard origin != nil || headers.contains(name: "Sec-Fetch-Site") else { return nil }  // not a browser
    if !self.allowedOrigins.isEmpty {
      guard let origin, !self.allowedOrigins.contains("*"), !self.allowedOrigins.contains(Self.normalized(origin))
      else { return nil }
      return Self.forbidden("origin \(origin) is not allowed (--allowed-origin)", extra)
    }
    let host = headers.first(name: "Host")?.lowercased() ?? ""
    guard self.isOwnName(host) else {
      return Self.forbidden(
        "host \(host) is not a name of this gateway: use its IP address or localhost, or allow the name with --allowed-host",
        extra
      )
    }
    if let origin, Self.normalized(origin) != "\(self.scheme)://\(host)" {
      return Self.forbidden("origin \(origin) is not allowed (--allowed-origin)", extra)
    }
    return nil
  }

  /// Whether `host` (a `Host` header: name or address, optional port) names this gateway.
  private func isOwnName(_ host: String) -> Bool {
    let name: Substring
    if host.hasPrefix("["), let end = host.firstIndex(of: "]") {
      name = host[host.index(after: host.startIndex)..<end]  // [v6]:port
    } else {
      name = host.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
    }
    if name.isEmpty { return false }
    if name == "localhost" || self.allowedHosts.contains(String(name)) { return true }
    return (try? SocketAddress(ipAddress: String(name), port: 0)) != nil  // an address cannot be rebound
  }

  private static func forbidden(_ message: String, _ extra: HTTPHeaders) -> HTTPStatusResponse {
    HTTPStatusResponse(.forbidden, code: .permissionDenied, message: message, headers: extra)
  }

  private static func normalized(_ origin: String) -> String {
    var origin = origin.lowercased()
    while origin.hasSuffix("/") { origin.removeLast() }
    return origin
  }
}

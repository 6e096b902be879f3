internal import NIOHPACK

/// A debugging aid (`sluice --echo-metadata`): every RPC's response headers repeat the request
/// metadata that reached the service, as `echo-<key>`. It shows what a browser, curl or websocat
/// call really carries after the front end's translation. Credentials (`authorization`,
/// `proxy-authorization`, `cookie`) are never echoed.
enum MetadataEcho {
  private static let credentials: Set<String> = ["authorization", "proxy-authorization", "cookie"]

  /// Whether a request metadata key is echoed: not a pseudo-header, not gRPC's own, not a
  /// credential, not the gateway's bookkeeping.
  static func echoes(_ key: String) -> Bool {
    !key.hasPrefix(":") && !key.hasPrefix("grpc-") && !Self.credentials.contains(key)
      && !key.hasPrefix(MetadataKeys.gatewayPrefix)
  }

  /// Adds the request `metadata` to response `headers` as `echo-<key>`, for the engine's calls.
  static func echo(_ metadata: HPACKHeaders, into headers: inout HPACKHeaders) {
    for (name, value, _) in metadata where Self.echoes(name) {
      headers.add(name: "echo-\(name)", value: value)
    }
  }
}

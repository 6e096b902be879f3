/// One `--upstream SERVICE=ADDR[,ADDR…]`: the gRPC server(s) that serve a service Sluice does not
/// host itself.
public struct UpstreamRoute: Sendable, Equatable {
  /// A full service name (`pkg.Service`), or `*` for every service Sluice does not host.
  public var service: String
  /// `host:port` addresses; a host name resolving to several addresses spreads calls over all.
  public var addresses: [UpstreamAddress]

  public init(service: String, addresses: [UpstreamAddress]) {
    self.service = service
    self.addresses = addresses
  }

  /// Parses `SERVICE=ADDR[,ADDR…]`, or throws an error that names what is wrong.
  public init(parsing text: String) throws(UpstreamConfigurationError) {
    guard let equals = text.firstIndex(of: "=") else {
      throw UpstreamConfigurationError("--upstream \(text): expected SERVICE=HOST:PORT[,HOST:PORT…]")
    }
    let service = String(text[..<equals])
    guard service == "*" || Self.isServiceName(service) else {
      throw UpstreamConfigurationError(
        "--upstream \(text): '\(service)' is not a full service name (pkg.Service) or '*'")
    }
    var addresses: [UpstreamAddress] = []
    for part in text[text.index(after: equals)...].split(separator: ",", omittingEmptySubsequences: false) {
      addresses.append(try UpstreamAddress(parsing: String(part), in: text))
    }
    self.init(service: service, addresses: addresses)
  }

  private static func isServiceName(_ name: String) -> Bool {
    !name.isEmpty && !name.hasPrefix(".") && !name.hasSuffix(".")
      && name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }
  }
}

/// A `host:port` (IPv6 in brackets: `[::1]:50051`).
public struct UpstreamAddress: Sendable, Hashable, CustomStringConvertible {
  public var host: String
  public var port: Int

  public init(host: String, port: Int) {
    self.host = host
    self.port = port
  }

  /// Reads `HOST:PORT` (`[::1]:50051` for IPv6).
  /// - Throws: An error saying `text` is not `HOST:PORT`.
  public init(parsing text: String) throws(UpstreamConfigurationError) {
    try self.init(parsing: text, error: UpstreamConfigurationError("'\(text)' is not HOST:PORT"))
  }

  init(parsing text: String, in flag: String) throws(UpstreamConfigurationError) {
    try self.init(parsing: text, error: UpstreamConfigurationError("--upstream \(flag): '\(text)' is not HOST:PORT"))
  }

  private init(parsing text: String, error invalid: UpstreamConfigurationError) throws(UpstreamConfigurationError) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
      (1...65_535).contains(port)
    else { throw invalid }
    var host = String(text[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty, !host.contains("/") else { throw invalid }
    self.init(host: host, port: port)
  }

  public var description: String {
    self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
  }
}

/// `--upstream-tls`, `--upstream-ca`, `--upstream-server-name`: TLS (ALPN h2) to every upstream.
public struct UpstreamTLS: Sendable, Equatable {
  /// PEM roots to trust instead of the system's.
  public var caPath: String?
  /// The name to verify (and send as SNI) instead of each address's host.
  public var serverName: String?

  public init(caPath: String? = nil, serverName: String? = nil) {
    self.caPath = caPath
    self.serverName = serverName
  }
}

/// A configuration mistake about upstreams, with a message for the operator.
public struct UpstreamConfigurationError: Error, CustomStringConvertible {
  public var description: String

  init(_ description: String) {
    self.description = description
  }
}

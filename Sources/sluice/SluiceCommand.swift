public import ArgumentParser
internal import Foundation
public import Logging
import Sluice
import UnixSignals

/// `sluice`: parses flags into a `GatewayConfiguration` and runs the `Gateway` until SIGTERM/SIGINT.
@main
struct SluiceCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sluice",
    abstract: "A gRPC gateway for browsers and scripts.",
    discussion: """
      Hosts proto.StreamService, hello.UserService and DataService over native gRPC (HTTP/2, h2c) \
      and translates WebSocket/JSON sessions to them. Every RPC has the path \
      /<package>.<Service>/<Method> on both ports. SIGTERM or SIGINT shuts down gracefully: \
      new RPCs are refused, open streams end with UNAVAILABLE, and the process exits 0.
      """
  )

  @Option(help: "The address to listen on; 0.0.0.0 or :: exposes the gateway beyond this machine.")
  var host = GatewayConfiguration().host

  @Option(help: "The native gRPC (h2c) port; 0 picks a free port, which is logged.")
  var grpcPort = GatewayConfiguration().grpcPort

  @Option(
    help:
      "The HTTP/1.1 port for WebSocket/JSON sessions, HTTP JSON calls and the page; 0 picks a free port, which is logged."
  )
  var httpPort = GatewayConfiguration().httpPort

  @Option(help: "Milliseconds the seed services pause between List sends and after each Record receive; 0 for none.")
  var paceMs = 1000

  @Option(help: "How many responses proto.StreamService/List sends.")
  var listCount = GatewayConfiguration().listCount

  @Option(help: "Seconds a graceful shutdown may take before open RPCs are cancelled.")
  var drainTimeout = 10.0

  @Option(help: "The largest JSON message or WebSocket frame accepted, in bytes.")
  var maxMessageBytes = GatewayConfiguration().maxMessageBytes

  @Option(
    name: .customLong("allowed-origin"),
    help: ArgumentHelp(
      "A browser origin (scheme://host[:port]) allowed to open sessions; repeatable; * allows any.",
      discussion: "Without any, only pages served from the gateway's own host and port are allowed."
    )
  )
  var allowedOrigins: [String] = []

  @Option(
    name: .customLong("require-bearer"),
    help: ArgumentHelp(
      "Require authorization: Bearer <token> on every RPC: file:<path> or env:<NAME> holds the tokens.",
      discussion:
        "One token per line (or comma-separated); # starts a comment line. Calls without a listed token get UNAUTHENTICATED (HTTP 401)."
    )
  )
  var requireBearer: String?

  @Option(
    name: .customLong("bearer-cookie"),
    help: ArgumentHelp(
      "A cookie that may carry the bearer token on a WebSocket handshake (needs --require-bearer and --allowed-origin).",
      discussion:
        "Browsers attach cookies to every handshake, even from other sites' pages, so the cookie counts only with an Origin allow list (not *)."
    )
  )
  var bearerCookie: String?

  @Option(
    help: "Seconds of quiet before a WebSocket peer is pinged; one silent interval after the ping drops it. 0 disables."
  )
  var wsPingInterval = 30.0

  @Option(help: "The deepest nesting of JSON arrays and objects accepted in a request.")
  var maxJsonDepth = GatewayConfiguration().maxJSONDepth

  @Option(help: "The largest HTTP request head (all headers) accepted, in bytes.")
  var maxHeaderBytes = GatewayConfiguration().maxHeaderBytes

  @Option(help: "RPCs allowed to run at once over every transport; more get RESOURCE_EXHAUSTED.")
  var maxConcurrentRpcs = GatewayConfiguration().maxConcurrentRPCs

  @Option(help: "Connections allowed open at once on each port; more get 503 (HTTP) or are closed (gRPC).")
  var maxConnections = GatewayConfiguration().maxConnections

  @Option(help: "Seconds a new HTTP-port connection may take to send its request head (handshake).")
  var handshakeTimeout = 10.0

  @Option(help: "Seconds a kept-alive HTTP connection may wait for its next request.")
  var idleTimeout = 60.0

  @Option(
    help:
      "Seconds an HTTP-port connection may accept none of Sluice's writes (a client not reading) before it is closed.")
  var sendTimeout = 60.0

  @Option(help: "A PEM certificate chain: serve TLS on both ports (https/wss, and gRPC with ALPN h2).")
  var tlsCert: String?

  @Option(help: "The PEM private key of --tls-cert.")
  var tlsKey: String?

  @Option(help: "The folder served on GET / (the browser page); an empty value serves no files.")
  var publicDir = GatewayConfiguration().publicDirectory ?? ""

  @Flag(help: "Debugging aid: response headers echo each RPC's request metadata as echo-<key>.")
  var echoMetadata = false

  @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
  var logLevel: Logger.Level = .info

  func validate() throws {
    for (flag, port) in [("--grpc-port", self.grpcPort), ("--http-port", self.httpPort)]
    where !(0...65535).contains(port) {
      throw ValidationError("\(flag) must be between 0 and 65535, not \(port).")
    }
    guard self.paceMs >= 0 else { throw ValidationError("--pace-ms must not be negative.") }
    guard self.listCount >= 0 else { throw ValidationError("--list-count must not be negative.") }
    guard self.drainTimeout >= 0 else { throw ValidationError("--drain-timeout must not be negative.") }
    guard self.maxMessageBytes >= 64 else { throw ValidationError("--max-message-bytes must be at least 64.") }
    guard self.wsPingInterval >= 0 else { throw ValidationError("--ws-ping-interval must not be negative.") }
    for (flag, value) in [
      ("--max-json-depth", self.maxJsonDepth), ("--max-header-bytes", self.maxHeaderBytes),
      ("--max-concurrent-rpcs", self.maxConcurrentRpcs), ("--max-connections", self.maxConnections),
    ] where value < 1 {
      throw ValidationError("\(flag) must be at least 1.")
    }
    guard self.handshakeTimeout > 0, self.idleTimeout > 0, self.sendTimeout > 0 else {
      throw ValidationError("--handshake-timeout, --idle-timeout and --send-timeout must be positive.")
    }
    guard (self.tlsCert == nil) == (self.tlsKey == nil) else {
      throw ValidationError("--tls-cert and --tls-key go together.")
    }
    _ = try self.bearerTokens()
    if let cookie = self.bearerCookie {
      guard self.requireBearer != nil else { throw ValidationError("--bearer-cookie needs --require-bearer.") }
      guard !cookie.isEmpty, !cookie.contains(where: { ";=, \t".contains($0) }) else {
        throw ValidationError("--bearer-cookie: \"\(cookie)\" is not a cookie name.")
      }
      guard GatewayConfiguration(allowedOrigins: self.allowedOrigins).hasOriginAllowList else {
        throw ValidationError(
          "--bearer-cookie needs an Origin allow list (--allowed-origin, not *): cookies are sent with every handshake, even from other sites' pages."
        )
      }
    }
  }

  /// The tokens named by `--require-bearer`, or nil when it is not given.
  private func bearerTokens() throws -> [String]? {
    guard let source = self.requireBearer else { return nil }
    let text: String
    if source.hasPrefix("file:") {
      let path = String(source.dropFirst("file:".count))
      guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw ValidationError("--require-bearer: cannot read \(path).")
      }
      text = contents
    } else if source.hasPrefix("env:") {
      let name = String(source.dropFirst("env:".count))
      guard let value = ProcessInfo.processInfo.environment[name] else {
        throw ValidationError("--require-bearer: the environment variable \(name) is not set.")
      }
      text = value
    } else {
      throw ValidationError("--require-bearer takes file:<path> or env:<NAME>, not \(source).")
    }
    let tokens = BearerAuthenticator.tokens(fromList: text)
    guard !tokens.isEmpty else { throw ValidationError("--require-bearer: \(source) holds no token.") }
    return tokens
  }

  func run() async throws {
    let level = self.logLevel
    LoggingSystem.bootstrap { label in
      var handler = StreamLogHandler.standardError(label: label)
      handler.logLevel = level
      return handler
    }
    let configuration = GatewayConfiguration(
      host: self.host,
      grpcPort: self.grpcPort,
      httpPort: self.httpPort,
      pace: .milliseconds(self.paceMs),
      listCount: self.listCount,
      drainTimeout: .milliseconds(Int64(self.drainTimeout * 1000)),
      maxMessageBytes: self.maxMessageBytes,
      allowedOrigins: self.allowedOrigins,
      webSocketPingInterval: self.wsPingInterval > 0 ? .milliseconds(Int64(self.wsPingInterval * 1000)) : nil,
      publicDirectory: self.publicDir.isEmpty ? nil : self.publicDir,
      bearerTokens: try self.bearerTokens(),
      bearerCookie: self.bearerCookie,
      maxJSONDepth: self.maxJsonDepth,
      maxHeaderBytes: self.maxHeaderBytes,
      maxConcurrentRPCs: self.maxConcurrentRpcs,
      maxConnections: self.maxConnections,
      handshakeTimeout: .milliseconds(Int64(self.handshakeTimeout * 1000)),
      idleTimeout: .milliseconds(Int64(self.idleTimeout * 1000)),
      sendTimeout: .milliseconds(Int64(self.sendTimeout * 1000)),
      tls: self.tlsCert.map { .init(certificateChainPath: $0, privateKeyPath: self.tlsKey ?? "") }
    )
    let gateway = try Gateway(
      configuration: configuration,
      logger: Logger(label: "sluice"),
      shutdownSignals: [.sigterm, .sigint],
      interceptors: self.echoMetadata ? [MetadataEcho()] : []
    )
    try await gateway.run()
  }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

public import ArgumentParser
internal import Foundation
public import Logging
import Sluice
import UnixSignals

/// `sluice [serve]`: parses flags into a `GatewayConfiguration` and runs the `Gateway` until
/// SIGTERM/SIGINT.
struct ServeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "serve",
    abstract: "Run the gateway (the default: `sluice --grpc-port 8888` is `sluice serve --grpc-port 8888`).",
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

  @Option(
    help:
      "Seconds a graceful shutdown keeps serving with health NOT_SERVING before the ports drain, for load balancers to notice."
  )
  var shutdownDelay = 0.0

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

  @Flag(
    help: ArgumentHelp(
      "Pass the verified authorization header on to services and upstreams (needs --require-bearer).",
      discussion: "By default the token the gateway checked stops at the gateway."
    )
  )
  var forwardBearer = false

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

  @Option(
    help: "Seconds a new connection may take to send its request head (HTTP) or HTTP/2 preface and SETTINGS (gRPC)."
  )
  var handshakeTimeout = 10.0

  @Option(help: "Seconds a kept-alive HTTP connection may wait for its next request.")
  var idleTimeout = 60.0

  @Option(
    help:
      "Seconds an HTTP-port connection may accept none of Sluice's writes (a client not reading) before it is closed.")
  var sendTimeout = 60.0

  @Option(
    help:
      "Seconds one request message may take to arrive once begun (HTTP body, NDJSON line, WebSocket message); slower ones get 408 / DEADLINE_EXCEEDED."
  )
  var bodyTimeout = 30.0

  @Option(help: "The most bytes of unfinished request messages held over all connections; past it, RESOURCE_EXHAUSTED.")
  var maxBufferedRequestBytes = GatewayConfiguration().maxBufferedRequestBytes

  @Option(
    name: .customLong("allowed-host"),
    help: ArgumentHelp(
      "A host name (Host header, without port) browser pages may use to reach the gateway; repeatable.",
      discussion:
        "Without --allowed-origin, a page's Origin must match its Host, and the Host must be the bind address, localhost, 127.0.0.1, [::1] or one of these (DNS rebinding)."
    )
  )
  var allowedHosts: [String] = []

  @Flag(help: "Refuse GET ?request= calls (EventSource): any web page can make a browser send one.")
  var noGetCalls = false

  @Option(help: "SETTINGS_MAX_CONCURRENT_STREAMS on the gRPC port (per connection).")
  var grpcMaxConcurrentStreams = GatewayConfiguration.GRPCPort.defaults.maxConcurrentStreams

  @Option(help: "Seconds a gRPC connection may have no open stream before GOAWAY; 0 never.")
  var grpcMaxConnectionIdle = 300.0

  @Option(help: "Seconds after which a gRPC connection gets GOAWAY (open streams go on); 0 never.")
  var grpcMaxConnectionAge = 0.0

  @Option(
    help: "Seconds streams may go on after the age GOAWAY before the connection closes; 0 for as long as they last.")
  var grpcMaxConnectionAgeGrace = 0.0

  @Option(help: "SETTINGS_INITIAL_WINDOW_SIZE on the gRPC port: request bytes a stream may send ahead of the gateway.")
  var grpcInitialWindowSize = GatewayConfiguration.GRPCPort.defaults.initialWindowSize

  @Option(help: "SETTINGS_MAX_FRAME_SIZE on the gRPC port.")
  var grpcMaxFrameSize = GatewayConfiguration.GRPCPort.defaults.maxFrameSize

  @Option(help: "SETTINGS_MAX_HEADER_LIST_SIZE on the gRPC port: the largest request metadata, in bytes.")
  var grpcMaxHeaderListSize = GatewayConfiguration.GRPCPort.defaults.maxHeaderListSize

  @Option(help: "A PEM certificate chain: serve TLS on both ports (https/wss, and gRPC with ALPN h2).")
  var tlsCert: String?

  @Option(help: "The PEM private key of --tls-cert.")
  var tlsKey: String?

  @Option(
    help:
      "A folder served on GET / instead of the page built into sluice (read per request); an empty value serves no files."
  )
  var publicDir: String?

  @Flag(
    help:
      "Serve native gRPC on the HTTP port too (HTTP/2 by prior knowledge, or ALPN h2/grpc-exp under TLS): one port for every transport."
  )
  var grpcOnHttpPort = false

  @Flag(help: "Debugging aid: response headers echo each RPC's request metadata as echo-<key>.")
  var echoMetadata = false

  @Flag(help: "Also host grpc.testing.TestService (gRPC's interop test service) on the native port.")
  var interopService = false

  @Option(
    help: ArgumentHelp(
      "A gRPC server behind the gateway: SERVICE=HOST:PORT[,HOST:PORT…], SERVICE being pkg.Service or * (every service not hosted); repeatable.",
      valueName: "service=addr"
    )
  )
  var upstream: [String] = []

  @Option(
    help: ArgumentHelp(
      "A FileDescriptorSet (protoc --include_imports --descriptor_set_out) whose methods the JSON front ends translate; repeatable.",
      valueName: "file"
    )
  )
  var descriptorSet: [String] = []

  @Flag(
    help:
      "Ask each upstream for its services and descriptors over gRPC server reflection (v1, then v1alpha) at start and on SIGHUP."
  )
  var upstreamReflection = false

  @Flag(help: "Connect to upstreams over TLS (ALPN h2), verifying them against the system's roots or --upstream-ca.")
  var upstreamTls = false

  @Option(help: "PEM certificates to trust for --upstream-tls instead of the system's roots.")
  var upstreamCa: String?

  @Option(help: "The name to verify (and send as SNI) on --upstream-tls connections instead of each address's host.")
  var upstreamServerName: String?

  @Option(help: "Which services sluice hosts itself: seed (the tutorial's services) or none (a pure proxy).")
  var hosted: HostedServices = .seed

  @Option(
    help: ArgumentHelp(
      "Export a span per RPC with OTLP to this collector URL (http://127.0.0.1:4317 for gRPC, http://127.0.0.1:4318/v1/traces for HTTP).",
      discussion:
        "Spans continue the client's traceparent and are the parents of upstream calls; OTEL_* environment variables refine the exporter.",
      valueName: "url"
    )
  )
  var otlpEndpoint: String?

  @Option(help: "The OTLP protocol of --otlp-endpoint: grpc or http (protobuf bodies).")
  var otlpProtocol: OTLPProtocol = .grpc

  @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
  var logLevel: Logger.Level = .info

  @Option(
    help: ArgumentHelp(
      "A YAML (.yaml, .yml) or JSON file of flag values, keyed by the flags' names (grpc-port: 9000).",
      discussion:
        "SLUICE_* environment variables (SLUICE_GRPC_PORT=9000; lists comma-separated) win over the file, and the command line's flags over both.",
      valueName: "file"
    )
  )
  var config: String?

  @Flag(
    help:
      "Print the effective configuration (file < environment < flags) as YAML and exit; tokens and URL passwords are not shown."
  )
  var printConfig = false

  /// The accepted range of every numeric flag: out-of-range values stop sluice at start with the
  /// flag's name, instead of overflowing a conversion at the first request.
  private static let secondsLimit = 31_536_000.0  // a year

  func validate() throws {
    func check<Value: Comparable>(_ flag: String, _ value: Value, _ range: ClosedRange<Value>) throws {
      guard range.contains(value) else {
        throw ValidationError("\(flag) must be between \(range.lowerBound) and \(range.upperBound), not \(value).")
      }
    }
    func checkSeconds(_ flag: String, _ value: Double, allowZero: Bool) throws {
      guard value.isFinite, value > 0 || (allowZero && value == 0), value <= Self.secondsLimit else {
        let lower = allowZero ? "between 0 and" : "more than 0 and at most"
        throw ValidationError("\(flag) must be \(lower) \(Int(Self.secondsLimit)) seconds, not \(value).")
      }
    }
    try check("--grpc-port", self.grpcPort, 0...65535)
    try check("--http-port", self.httpPort, 0...65535)
    try check("--pace-ms", self.paceMs, 0...3_600_000)
    try check("--list-count", self.listCount, 0...1_000_000_000)
    try check("--max-message-bytes", self.maxMessageBytes, 64...(1 << 30))
    try check("--max-json-depth", self.maxJsonDepth, 1...GatewayConfiguration.maximumJSONDepth)
    try check("--max-header-bytes", self.maxHeaderBytes, 256...(16 << 20))
    try check("--max-concurrent-rpcs", self.maxConcurrentRpcs, 1...10_000_000)
    try check("--max-connections", self.maxConnections, 1...10_000_000)
    try check("--max-buffered-request-bytes", self.maxBufferedRequestBytes, 64...(1 << 40))
    try check("--grpc-max-concurrent-streams", self.grpcMaxConcurrentStreams, 1...Int(UInt32.max))
    try check("--grpc-initial-window-size", self.grpcInitialWindowSize, 65_535...Int(Int32.max))
    try check("--grpc-max-frame-size", self.grpcMaxFrameSize, 16_384...16_777_215)
    try check("--grpc-max-header-list-size", self.grpcMaxHeaderListSize, 1024...(16 << 20))
    for (flag, value) in [
      ("--drain-timeout", self.drainTimeout), ("--shutdown-delay", self.shutdownDelay),
      ("--ws-ping-interval", self.wsPingInterval),
      ("--grpc-max-connection-idle", self.grpcMaxConnectionIdle),
      ("--grpc-max-connection-age", self.grpcMaxConnectionAge),
      ("--grpc-max-connection-age-grace", self.grpcMaxConnectionAgeGrace),
    ] {
      try checkSeconds(flag, value, allowZero: true)
    }
    for (flag, value) in [
      ("--handshake-timeout", self.handshakeTimeout), ("--idle-timeout", self.idleTimeout),
      ("--send-timeout", self.sendTimeout), ("--body-timeout", self.bodyTimeout),
    ] {
      try checkSeconds(flag, value, allowZero: false)
    }
    guard (self.tlsCert == nil) == (self.tlsKey == nil) else {
      throw ValidationError("--tls-cert and --tls-key go together.")
    }
    _ = try self.bearerTokens()
    _ = try self.upstreamRoutes()
    if (self.upstreamCa != nil || self.upstreamServerName != nil) && !self.upstreamTls {
      throw ValidationError("--upstream-ca and --upstream-server-name need --upstream-tls.")
    }
    if self.upstreamReflection && self.upstream.isEmpty {
      throw ValidationError("--upstream-reflection needs --upstream.")
    }
    if let endpoint = self.otlpEndpoint, !(endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://")) {
      throw ValidationError("--otlp-endpoint takes an http:// or https:// URL, not \(endpoint).")
    }
    if self.hosted == .none && self.upstream.isEmpty {
      throw ValidationError("--hosted none serves nothing without --upstream.")
    }
    if self.forwardBearer, self.requireBearer == nil {
      throw ValidationError("--forward-bearer needs --require-bearer.")
    }
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

  /// The `--upstream` flags, parsed.
  private func upstreamRoutes() throws -> [UpstreamRoute] {
    do {
      return try self.upstream.map { text throws(UpstreamConfigurationError) in try UpstreamRoute(parsing: text) }
    } catch {
      throw ValidationError(error.description)
    }
  }

  /// The `--descriptor-set` files' bytes.
  private func descriptorSets() throws -> [[UInt8]] {
    try self.descriptorSet.map { path in
      guard let data = FileManager.default.contents(atPath: path) else {
        throw ValidationError("--descriptor-set: cannot read \(path).")
      }
      return [UInt8](data)
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
    if self.printConfig {
      var text = "# sluice \(SluiceCommand.version): the effective configuration (--config < SLUICE_* < flags)\n"
      for (key, _, value) in ConfigurationSources.keys { text += value(self).line(key) + "\n" }
      ClientOutput.standardOutput(text)
      return
    }
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
      drainTimeout: Self.duration(seconds: self.drainTimeout),
      shutdownDelay: Self.duration(seconds: self.shutdownDelay),
      maxMessageBytes: self.maxMessageBytes,
      allowedOrigins: self.allowedOrigins,
      webSocketPingInterval: self.wsPingInterval > 0 ? Self.duration(seconds: self.wsPingInterval) : nil,
      publicDirectory: self.publicDir?.isEmpty == false ? self.publicDir : nil,
      servesPublicFiles: self.publicDir?.isEmpty != true,
      grpcOnHTTPPort: self.grpcOnHttpPort,
      bearerTokens: try self.bearerTokens(),
      bearerCookie: self.bearerCookie,
      maxJSONDepth: self.maxJsonDepth,
      maxHeaderBytes: self.maxHeaderBytes,
      maxConcurrentRPCs: self.maxConcurrentRpcs,
      maxConnections: self.maxConnections,
      handshakeTimeout: Self.duration(seconds: self.handshakeTimeout),
      idleTimeout: Self.duration(seconds: self.idleTimeout),
      sendTimeout: Self.duration(seconds: self.sendTimeout),
      bodyTimeout: Self.duration(seconds: self.bodyTimeout),
      maxBufferedRequestBytes: self.maxBufferedRequestBytes,
      allowedHosts: self.allowedHosts,
      allowGetCalls: !self.noGetCalls,
      grpc: GatewayConfiguration.GRPCPort(
        maxConcurrentStreams: self.grpcMaxConcurrentStreams,
        maxConnectionIdle: self.grpcMaxConnectionIdle > 0 ? Self.duration(seconds: self.grpcMaxConnectionIdle) : nil,
        maxConnectionAge: self.grpcMaxConnectionAge > 0 ? Self.duration(seconds: self.grpcMaxConnectionAge) : nil,
        maxConnectionAgeGrace: self.grpcMaxConnectionAgeGrace > 0
          ? Self.duration(seconds: self.grpcMaxConnectionAgeGrace) : nil,
        initialWindowSize: self.grpcInitialWindowSize,
        maxFrameSize: self.grpcMaxFrameSize,
        maxHeaderListSize: self.grpcMaxHeaderListSize
      ),
      echoMetadata: self.echoMetadata,
      forwardBearer: self.forwardBearer,
      interopService: self.interopService,
      tls: self.tlsCert.map { .init(certificateChainPath: $0, privateKeyPath: self.tlsKey ?? "") },
      hostsSeed: self.hosted == .seed,
      upstreams: try self.upstreamRoutes(),
      descriptorSets: try self.descriptorSets(),
      upstreamTLS: self.upstreamTls ? UpstreamTLS(caPath: self.upstreamCa, serverName: self.upstreamServerName) : nil,
      otlpTraces: self.otlpEndpoint.map { .init(endpoint: $0, grpc: self.otlpProtocol == .grpc) }
    )
    let logger = Logger(label: "sluice")
    let gateway = try Gateway(configuration: configuration, logger: logger, shutdownSignals: [.sigterm, .sigint])
    guard self.upstreamReflection else {
      try await gateway.run()
      return
    }
    // Described before the ports open, so the first JSON call already has the descriptors.
    let reflection = ReflectedDescriptors(
      routes: configuration.upstreams, tls: configuration.upstreamTLS, gateway: gateway, logger: logger)
    let signals = await UnixSignalsSequence(trapping: .sighup)
    await reflection.refresh(onlyMissing: false)
    // The gateway's run decides when the process ends (true); the helpers (false) may end first.
    try await withThrowingTaskGroup(of: Bool.self) { group in
      group.addTask {
        try await gateway.run()
        return true
      }
      group.addTask {
        // Upstreams that could not be asked are asked again every 10 s until they answer.
        while !Task.isCancelled, await reflection.hasMissing {
          try await Task.sleep(for: .seconds(10))
          await reflection.refresh(onlyMissing: true)
        }
        return false
      }
      group.addTask {
        for await _ in signals {
          logger.info("SIGHUP: asking the upstreams to describe their services again")
          await reflection.refresh(onlyMissing: false)
        }
        return false
      }
      while let gatewayEnded = try await group.next() {
        if gatewayEnded { break }
      }
      group.cancelAll()
    }
  }
}

/// The descriptors `--upstream-reflection` got, per upstream, handed to the gateway whole.
actor ReflectedDescriptors {
  private let routes: [UpstreamRoute]
  private let tls: UpstreamTLS?
  private let gateway: Gateway
  private let logger: Logger
  private var sets: [String: [UInt8]] = [:]

  init(routes: [UpstreamRoute], tls: UpstreamTLS?, gateway: Gateway, logger: Logger) {
    self.routes = routes
    self.tls = tls
    self.gateway = gateway
    self.logger = logger
  }

  var hasMissing: Bool { self.routes.contains { self.sets[$0.service] == nil } }

  /// Asks every upstream (or those that have not answered yet) and gives the gateway the result;
  /// an upstream that cannot be asked, or whose descriptors do not load, keeps what it described
  /// before (and one that never described any is asked again).
  func refresh(onlyMissing: Bool) async {
    for route in self.routes where !onlyMissing || self.sets[route.service] == nil {
      let addresses = route.addresses.map { $0.description }.joined(separator: ",")
      let description: UpstreamReflection.Description
      do {
        description = try await UpstreamReflection.describe(route, tls: self.tls, logger: self.logger)
      } catch {
        self.logger.warning(
          "Upstream reflection failed; JSON calls to its services need descriptors (asked again every 10 s)",
          metadata: [
            "sluice.upstream.service": "\(route.service)", "sluice.upstream.addresses": "\(addresses)",
            "sluice.error": "\(error)",
          ])
        continue
      }
      // Loaded (so validated) before it is kept: a set the gateway refuses neither replaces what
      // this upstream described before nor keeps the other upstreams' descriptors from loading.
      var sets = self.sets
      sets[route.service] = description.fileDescriptorSet
      do {
        try self.gateway.useDescriptors(self.routes.compactMap { sets[$0.service] })
      } catch {
        self.logger.error(
          "The upstream's descriptors do not load; the gateway keeps those it had",
          metadata: [
            "sluice.upstream.service": "\(route.service)", "sluice.upstream.addresses": "\(addresses)",
            "sluice.error": "\(error)",
          ])
        continue
      }
      self.sets = sets
      self.logger.info(
        "Upstream reflection",
        metadata: [
          "sluice.upstream.service": "\(route.service)", "sluice.upstream.addresses": "\(addresses)",
          "sluice.reflection.version": "\(description.version)",
          "sluice.reflection.services": "\(description.services.joined(separator: ","))",
        ])
    }
  }
}

extension ServeCommand {
  /// Seconds from a flag (already checked to be finite and at most `secondsLimit`) as a duration.
  fileprivate static func duration(seconds: Double) -> Duration {
    .milliseconds(Int64((seconds * 1000).rounded()))
  }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `--otlp-protocol`.
enum OTLPProtocol: String, ExpressibleByArgument, CaseIterable {
  case grpc, http
}

/// `--hosted`: the services sluice hosts itself.
enum HostedServices: String, ExpressibleByArgument, CaseIterable {
  case seed, none
}

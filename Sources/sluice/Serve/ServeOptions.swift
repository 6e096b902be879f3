public import ArgumentParser
internal import Foundation
public import Logging
import Sluice
internal import SluiceCodec

// The `serve` flags in groups, one per part of the gateway they configure (`--help` lists them in
// this order). Each group checks its own values; rules across groups are `ServeCommand.validate`'s,
// and `ServeCommand+Configuration.swift` maps the groups onto a `GatewayConfiguration`.

/// The accepted range of a numeric flag: an out-of-range value stops sluice at start with the
/// flag's name, instead of overflowing a conversion at the first request.
enum FlagRange {
  static let secondsLimit = 31_536_000.0  // a year

  static func check<Value: Comparable>(_ flag: String, _ value: Value, _ range: ClosedRange<Value>) throws {
    guard range.contains(value) else {
      throw ValidationError("\(flag) must be between \(range.lowerBound) and \(range.upperBound), not \(value).")
    }
  }

  static func checkSeconds(_ flag: String, _ value: Double, allowZero: Bool) throws {
    guard value.isFinite, value > 0 || (allowZero && value == 0), value <= Self.secondsLimit else {
      let lower = allowZero ? "between 0 and" : "more than 0 and at most"
      throw ValidationError("\(flag) must be \(lower) \(Int(Self.secondsLimit)) seconds, not \(value).")
    }
  }
}

/// Where the gateway listens and what its connections may do: both ports.
struct ListenOptions: ParsableArguments {
  @Option(help: "The address to listen on; 0.0.0.0 or :: exposes the gateway beyond this machine.")
  var host = GatewayConfiguration.defaults.listener.host

  @Option(help: "The native gRPC (h2c) port; 0 picks a free port, which is logged.")
  var grpcPort = GatewayConfiguration.defaults.grpc.port

  @Option(
    help:
      "The HTTP/1.1 port for WebSocket/JSON sessions, HTTP JSON calls and the page; 0 picks a free port, which is logged."
  )
  var httpPort = GatewayConfiguration.defaults.http.port

  @Flag(
    help:
      "Serve native gRPC on the HTTP port too (HTTP/2 by prior knowledge, or ALPN h2/grpc-exp under TLS): one port for every transport."
  )
  var grpcOnHttpPort = false

  @Option(help: "A PEM certificate chain: serve TLS on both ports (https/wss, and gRPC with ALPN h2).")
  var tlsCert: String?

  @Option(help: "The PEM private key of --tls-cert.")
  var tlsKey: String?

  @Option(help: "Connections allowed open at once on each port; more get 503 (HTTP) or are closed (gRPC).")
  var maxConnections = GatewayConfiguration.defaults.listener.maxConnections

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

  @Option(help: "The largest HTTP request head (all headers) accepted, in bytes.")
  var maxHeaderBytes = GatewayConfiguration.defaults.http.maxHeaderBytes

  @Option(
    help:
      "A folder served on GET / instead of the page built into sluice (read per request); an empty value serves no files."
  )
  var publicDir: String?

  func validate() throws {
    try FlagRange.check("--grpc-port", self.grpcPort, 0...65535)
    try FlagRange.check("--http-port", self.httpPort, 0...65535)
    try FlagRange.check("--max-connections", self.maxConnections, 1...10_000_000)
    try FlagRange.check("--max-header-bytes", self.maxHeaderBytes, 256...(16 << 20))
    for (flag, value) in [
      ("--handshake-timeout", self.handshakeTimeout), ("--idle-timeout", self.idleTimeout),
      ("--send-timeout", self.sendTimeout),
    ] {
      try FlagRange.checkSeconds(flag, value, allowZero: false)
    }
    guard (self.tlsCert == nil) == (self.tlsKey == nil) else {
      throw ValidationError("--tls-cert and --tls-key go together.")
    }
  }
}

/// What one call may send and hold, on every transport.
struct CallLimitOptions: ParsableArguments {
  @Option(help: "The largest JSON message or WebSocket frame accepted, in bytes.")
  var maxMessageBytes = GatewayConfiguration.defaults.calls.maxMessageBytes

  @Option(help: "The deepest nesting of JSON arrays and objects accepted in a request.")
  var maxJsonDepth = GatewayConfiguration.defaults.calls.maxJSONDepth

  @Option(help: "RPCs allowed to run at once over every transport; more get RESOURCE_EXHAUSTED.")
  var maxConcurrentRpcs = GatewayConfiguration.defaults.calls.maxConcurrentRPCs

  @Option(help: "Streams open at once in one multiplexed WebSocket session; more end with RESOURCE_EXHAUSTED.")
  var maxStreamsPerSession = GatewayConfiguration.defaults.webSocket.maxStreamsPerSession

  @Option(
    help:
      "Seconds one request message may take to arrive once begun (HTTP body, NDJSON line, WebSocket message); slower ones get 408 / DEADLINE_EXCEEDED."
  )
  var bodyTimeout = 30.0

  @Option(help: "The most bytes of unfinished request messages held over all connections; past it, RESOURCE_EXHAUSTED.")
  var maxBufferedRequestBytes = GatewayConfiguration.defaults.calls.maxBufferedRequestBytes

  func validate() throws {
    try FlagRange.check("--max-message-bytes", self.maxMessageBytes, 64...(1 << 30))
    try FlagRange.check("--max-json-depth", self.maxJsonDepth, 1...GatewayConfiguration.Calls.maximumJSONDepth)
    try FlagRange.check("--max-concurrent-rpcs", self.maxConcurrentRpcs, 1...10_000_000)
    try FlagRange.check("--max-streams-per-session", self.maxStreamsPerSession, 1...1_000_000)
    try FlagRange.check("--max-buffered-request-bytes", self.maxBufferedRequestBytes, 64...(1 << 40))
    try FlagRange.checkSeconds("--body-timeout", self.bodyTimeout, allowZero: false)
  }
}

/// Who may call: browser origins and hosts, bearer tokens, GET calls, WebSocket keepalive.
struct AccessOptions: ParsableArguments {
  @Option(
    name: .customLong("allowed-origin"),
    help: ArgumentHelp(
      "A browser origin (scheme://host[:port]) allowed to open sessions; repeatable; * allows any.",
      discussion: "Without any, only pages served from the gateway's own host and port are allowed."
    )
  )
  var allowedOrigins: [String] = []

  @Option(
    name: .customLong("allowed-host"),
    help: ArgumentHelp(
      "A host name (Host header, without port) browser pages may use to reach the gateway; repeatable.",
      discussion:
        "Without --allowed-origin, a page's Origin must match its Host, and the Host must be the bind address, localhost, 127.0.0.1, [::1] or one of these (DNS rebinding)."
    )
  )
  var allowedHosts: [String] = []

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

  @Flag(help: "Refuse GET ?request= calls (EventSource): any web page can make a browser send one.")
  var noGetCalls = false

  @Option(
    help: "Seconds of quiet before a WebSocket peer is pinged; one silent interval after the ping drops it. 0 disables."
  )
  var wsPingInterval = 30.0

  func validate() throws {
    try FlagRange.checkSeconds("--ws-ping-interval", self.wsPingInterval, allowZero: true)
    _ = try self.bearerTokens()
    if self.forwardBearer, self.requireBearer == nil {
      throw ValidationError("--forward-bearer needs --require-bearer.")
    }
    if let cookie = self.bearerCookie {
      guard self.requireBearer != nil else { throw ValidationError("--bearer-cookie needs --require-bearer.") }
      guard !cookie.isEmpty, !cookie.contains(where: { ";=, \t".contains($0) }) else {
        throw ValidationError("--bearer-cookie: \"\(cookie)\" is not a cookie name.")
      }
      guard GatewayConfiguration.Origins(allowed: self.allowedOrigins).hasAllowList else {
        throw ValidationError(
          "--bearer-cookie needs an Origin allow list (--allowed-origin, not *): cookies are sent with every handshake, even from other sites' pages."
        )
      }
    }
  }

  /// The tokens named by `--require-bearer`, or nil when it is not given.
  func bearerTokens() throws -> [String]? {
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
}

/// The native port's HTTP/2 settings and connection management.
struct GRPCPortOptions: ParsableArguments {
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

  func validate() throws {
    try FlagRange.check("--grpc-max-concurrent-streams", self.grpcMaxConcurrentStreams, 1...Int(UInt32.max))
    try FlagRange.check("--grpc-initial-window-size", self.grpcInitialWindowSize, 65_535...Int(Int32.max))
    try FlagRange.check("--grpc-max-frame-size", self.grpcMaxFrameSize, 16_384...16_777_215)
    try FlagRange.check("--grpc-max-header-list-size", self.grpcMaxHeaderListSize, 1024...(16 << 20))
    for (flag, value) in [
      ("--grpc-max-connection-idle", self.grpcMaxConnectionIdle),
      ("--grpc-max-connection-age", self.grpcMaxConnectionAge),
      ("--grpc-max-connection-age-grace", self.grpcMaxConnectionAgeGrace),
    ] {
      try FlagRange.checkSeconds(flag, value, allowZero: true)
    }
  }
}

/// What the gateway serves: its own services, and the gRPC servers behind it.
struct ServiceOptions: ParsableArguments {
  @Option(help: "Which services sluice hosts itself: seed (the tutorial's services) or none (a pure proxy).")
  var hosted: HostedServices = .seed

  @Option(help: "Milliseconds the seed services pause between List sends and after each Record receive; 0 for none.")
  var paceMs = 1000

  @Option(help: "How many responses proto.StreamService/List sends.")
  var listCount = GatewayConfiguration.defaults.services.listCount

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

  @Option(
    help: ArgumentHelp(
      "A REST route for a method, in place of its google.api.http rules: 'pkg.Service.Method GET /v1/{name} [body=FIELD] [response_body=FIELD]'; repeatable.",
      valueName: "rule"
    )
  )
  var httpRule: [String] = []

  @Flag(help: "Skip a REST query parameter that names no field of the request instead of answering 400.")
  var restIgnoreUnknownQuery = false

  @Option(
    help: ArgumentHelp(
      "How JSON answers are written: proto-names, enum-numbers, omit-defaults (and json-names, enum-names, emit-defaults, the defaults), comma-separated; a request's Sluice-JSON-Output header applies over it.",
      valueName: "options"
    )
  )
  var jsonOutput: [String] = []

  @Flag(
    help:
      "Skip JSON request members that name no field (and enum names that name no value) instead of answering INVALID_ARGUMENT."
  )
  var jsonIgnoreUnknownFields = false

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

  func validate() throws {
    try FlagRange.check("--pace-ms", self.paceMs, 0...3_600_000)
    try FlagRange.check("--list-count", self.listCount, 0...1_000_000_000)
    _ = try self.upstreamRoutes()
    _ = try self.httpRules()
    _ = try self.jsonOutputOptions()
    if (self.upstreamCa != nil || self.upstreamServerName != nil) && !self.upstreamTls {
      throw ValidationError("--upstream-ca and --upstream-server-name need --upstream-tls.")
    }
    if self.upstreamReflection && self.upstream.isEmpty {
      throw ValidationError("--upstream-reflection needs --upstream.")
    }
    if self.hosted == .none && self.upstream.isEmpty {
      throw ValidationError("--hosted none serves nothing without --upstream.")
    }
  }

  /// The `--upstream` flags, parsed.
  func upstreamRoutes() throws -> [UpstreamRoute] {
    do {
      return try self.upstream.map { text throws(UpstreamConfigurationError) in try UpstreamRoute(parsing: text) }
    } catch {
      throw ValidationError(error.description)
    }
  }

  /// The `--http-rule` flags, parsed.
  func httpRules() throws -> [ConfiguredHTTPRule] {
    do {
      return try self.httpRule.map { text throws(ConfiguredHTTPRuleError) in try ConfiguredHTTPRule(parsing: text) }
    } catch {
      throw ValidationError(error.description)
    }
  }

  /// The `--json-output` flags, applied in order over Sluice's defaults.
  func jsonOutputOptions() throws -> JSONCodec.EncodingOptions {
    var options = JSONCodec.EncodingOptions()
    for text in self.jsonOutput {
      do {
        try options.apply(words: text)
      } catch {
        throw ValidationError("--json-output: \(error.description).")
      }
    }
    return options
  }

  /// The `--descriptor-set` files' bytes.
  func descriptorSets() throws -> [[UInt8]] {
    try self.descriptorSet.map { path in
      guard let data = FileManager.default.contents(atPath: path) else {
        throw ValidationError("--descriptor-set: cannot read \(path).")
      }
      return [UInt8](data)
    }
  }
}

/// The process: shutdown, logs and spans.
struct ProcessOptions: ParsableArguments {
  @Option(help: "Seconds a graceful shutdown may take before open RPCs are cancelled.")
  var drainTimeout = 10.0

  @Option(
    help:
      "Seconds a graceful shutdown keeps serving with health NOT_SERVING before the ports drain, for load balancers to notice."
  )
  var shutdownDelay = 0.0

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

  func validate() throws {
    try FlagRange.checkSeconds("--drain-timeout", self.drainTimeout, allowZero: true)
    try FlagRange.checkSeconds("--shutdown-delay", self.shutdownDelay, allowZero: true)
    if let endpoint = self.otlpEndpoint, !(endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://")) {
      throw ValidationError("--otlp-endpoint takes an http:// or https:// URL, not \(endpoint).")
    }
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

/// Everything a `Gateway` needs to know, with the defaults in one place.
///
/// The `sluice` command fills it from its flags; tests build it directly (usually with port 0 and
/// no pace).
public struct GatewayConfiguration: Sendable {
  /// The address both front ends bind to. `127.0.0.1` keeps the gateway local; `0.0.0.0` or `::`
  /// expose it.
  public var host: String

  /// The native gRPC (HTTP/2, h2c) port; 0 picks a free one. The seed's port is 8888.
  public var grpcPort: Int

  /// The HTTP/1.1 JSON and WebSocket port; 0 picks a free one.
  public var httpPort: Int

  /// The seed services' pause between `List` sends and after each `Record` receive.
  public var pace: Duration

  /// How many responses `proto.StreamService/List` sends (the seed sends 7).
  public var listCount: Int

  /// How long a graceful shutdown may take before open RPCs are cancelled (after the shutdown
  /// delay).
  public var drainTimeout: Duration

  /// How long a graceful shutdown keeps serving after health turned NOT_SERVING, before the ports
  /// begin to drain: time for load balancers watching health to stop sending.
  public var shutdownDelay: Duration

  /// The largest message accepted in either direction on the JSON front ends: a WebSocket frame
  /// (after reassembling fragments), and a request or response message.
  public var maxMessageBytes: Int

  /// Origins (`scheme://host[:port]`) allowed to open WebSocket sessions and make CORS calls.
  /// Empty means the request's own host only. Requests without `Origin` are always allowed.
  public var allowedOrigins: [String]

  /// How long a WebSocket peer may be quiet before the server pings it; a peer that then sends
  /// nothing (not even the pong) for another interval is dropped. `nil` disables keepalive.
  public var webSocketPingInterval: Duration?

  /// The folder served on `GET /` (the browser page); `nil` serves the copy of `public/` built
  /// into the binary.
  public var publicDirectory: String?

  /// Whether `GET /` serves files at all.
  public var servesPublicFiles: Bool

  /// Whether the HTTP port also serves native gRPC (HTTP/2 by prior knowledge, or ALPN `h2` /
  /// `grpc-exp` under TLS), so one port carries every transport. The gRPC port stays open.
  public var grpcOnHTTPPort: Bool

  /// Bearer tokens every RPC must present (`authorization: Bearer <token>`) on every transport;
  /// `nil` requires none.
  public var bearerTokens: [String]?

  /// A cookie whose value a WebSocket handshake without `Authorization` (or a `bearer.`
  /// subprotocol) may present as its bearer token. Honoured only with an Origin allow list
  /// (`allowedOrigins` set and without `*`): browsers send cookies with every handshake, so a
  /// page on another site could otherwise open sessions with its visitors' credentials.
  public var bearerCookie: String?

  /// The deepest nesting of JSON arrays and objects accepted in a request.
  public var maxJSONDepth: Int

  /// The largest request head (all header names and values) accepted on the HTTP port.
  public var maxHeaderBytes: Int

  /// RPCs allowed to run at once, over every transport; more get `RESOURCE_EXHAUSTED`.
  public var maxConcurrentRPCs: Int

  /// Connections allowed open at once on each port; more get 503 on the HTTP port and are closed
  /// on the gRPC port.
  public var maxConnections: Int

  /// How long a new connection may take to send its first request head (HTTP port: a WebSocket
  /// handshake or an HTTP request) or its HTTP/2 preface and SETTINGS (gRPC port) before it is
  /// closed.
  public var handshakeTimeout: Duration

  /// How long a kept-alive HTTP connection may wait for its next request before it is closed.
  public var idleTimeout: Duration

  /// How long an HTTP-port connection may accept none of the gateway's writes (its client not
  /// reading) before it is closed and its RPC cancelled.
  public var sendTimeout: Duration

  /// How long one request message may take to arrive once it has begun: an HTTP request body
  /// (from its head), an NDJSON line, a WebSocket message's frames and fragments. A client that
  /// trickles a message in is answered 408 (HTTP) or `DEADLINE_EXCEEDED` (WebSocket) and closed.
  public var bodyTimeout: Duration

  /// The most bytes of unfinished request messages (bodies, NDJSON lines, WebSocket frames and
  /// fragments still arriving) held over every connection at once; a message that would go past
  /// it is refused with `RESOURCE_EXHAUSTED` (HTTP 503), so slow uploads cannot exhaust memory.
  public var maxBufferedRequestBytes: Int

  /// Host names (`Host` header, without port) that a browser page may use to reach the gateway
  /// when no Origin allow list is set, besides its bind address, `localhost`, `127.0.0.1` and
  /// `[::1]`. Guards the same-origin rule against DNS rebinding.
  public var allowedHosts: [String]

  /// Whether server-streaming methods answer `GET ?request=` (for `EventSource`). Such a GET is a
  /// "simple" cross-site request: any page can make a visitor's browser send one (its answer is
  /// not readable across origins, but the RPC runs).
  public var allowGetCalls: Bool

  /// The native gRPC port's HTTP/2 and connection management settings.
  public var grpc: GRPCPort

  /// A debugging aid: every RPC's response headers repeat its request metadata as `echo-<key>`.
  public var echoMetadata: Bool

  /// With bearer tokens: whether the `authorization` the gateway verified goes on to services
  /// and upstreams (it does not by default, as Envoy's `jwt_authn` with `forward: false`).
  public var forwardBearer: Bool

  /// Whether the native port also hosts `grpc.testing.TestService`, the service of gRPC's
  /// cross-language interop tests (for checking the gateway with gRPC's interop clients).
  public var interopService: Bool

  /// The native gRPC port's HTTP/2 and connection management settings.
  public struct GRPCPort: Sendable {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`, advertised on every connection: how many RPCs one
    /// connection may run at once, so that no connection takes more than its share of
    /// `--max-concurrent-rpcs`. A client that opens more gets the extra streams refused.
    public var maxConcurrentStreams: Int
    /// A connection with no open stream for this long gets GOAWAY and is closed; nil never.
    public var maxConnectionIdle: Duration?
    /// A connection older than this gets GOAWAY (its open streams go on); nil never.
    public var maxConnectionAge: Duration?
    /// How long streams may go on after the age GOAWAY before the connection is closed; nil
    /// for as long as they last.
    public var maxConnectionAgeGrace: Duration?
    /// `SETTINGS_INITIAL_WINDOW_SIZE`, and the window kept open per stream and per connection:
    /// how many request bytes a client may send ahead of the gateway reading them.
    public var initialWindowSize: Int
    /// `SETTINGS_MAX_FRAME_SIZE`: the largest frame a client may send.
    public var maxFrameSize: Int
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`: the largest request header block (metadata) accepted.
    public var maxHeaderListSize: Int

    /// Creates the settings; `defaults` has every value `sluice` runs with.
    public init(
      maxConcurrentStreams: Int,
      maxConnectionIdle: Duration?,
      maxConnectionAge: Duration?,
      maxConnectionAgeGrace: Duration?,
      initialWindowSize: Int = 1 << 20,
      maxFrameSize: Int = 1 << 14,
      maxHeaderListSize: Int = 16 << 10
    ) {
      self.maxConcurrentStreams = maxConcurrentStreams
      self.maxConnectionIdle = maxConnectionIdle
      self.maxConnectionAge = maxConnectionAge
      self.maxConnectionAgeGrace = maxConnectionAgeGrace
      self.initialWindowSize = initialWindowSize
      self.maxFrameSize = maxFrameSize
      self.maxHeaderListSize = maxHeaderListSize
    }

    /// The defaults: grpc-go's stream limit, 5 minutes of idleness, no age limit, a 1 MiB window,
    /// HTTP/2's default frame size and 16 KiB of metadata.
    public static let defaults = GRPCPort(
      maxConcurrentStreams: 1000,
      maxConnectionIdle: .seconds(300),
      maxConnectionAge: nil,
      maxConnectionAgeGrace: nil
    )
  }

  /// Whether Sluice hosts the seed services itself (`--hosted seed`, the default) or only
  /// proxies (`--hosted none`).
  public var hostsSeed: Bool

  /// The gRPC servers behind the gateway, by service (`--upstream`).
  public var upstreams: [UpstreamRoute]

  /// Serialized `FileDescriptorSet`s (`--descriptor-set`) whose methods the JSON front ends can
  /// translate, besides the hosted ones.
  public var descriptorSets: [[UInt8]]

  /// REST rules for methods whose protos cannot be changed (`--http-rule`): each replaces the
  /// method's own `google.api.http` rules.
  public var httpRules: [ConfiguredHTTPRule]

  /// TLS to upstreams (`--upstream-tls`); nil connects in plaintext (h2c).
  public var upstreamTLS: UpstreamTLS?

  /// `--upstream-reflection`: the upstreams are asked for their descriptors over gRPC server
  /// reflection before the ports open, again every 10 s until they answer, and on SIGHUP.
  public var upstreamReflection: Bool

  /// `--otlp-endpoint`: where a span per RPC is exported with OTLP; nil for none.
  public var otlpTraces: OTLPTraces?

  /// An OTLP collector for the RPCs' spans.
  public struct OTLPTraces: Sendable {
    /// The collector's URL, e.g. `http://127.0.0.1:4317` (gRPC) or `http://127.0.0.1:4318/v1/traces` (HTTP).
    public var endpoint: String
    /// OTLP over gRPC, else OTLP/HTTP with protobuf bodies.
    public var grpc: Bool

    public init(endpoint: String, grpc: Bool = true) {
      self.endpoint = endpoint
      self.grpc = grpc
    }
  }

  /// PEM files for TLS on both ports (`https`/`wss` and gRPC over TLS with ALPN h2); `nil` serves
  /// plaintext.
  public var tls: TLSFiles?

  /// A certificate chain and its private key, as PEM files.
  public struct TLSFiles: Sendable {
    /// The server's certificate, followed by any intermediates.
    public var certificateChainPath: String
    /// The private key of the first certificate.
    public var privateKeyPath: String

    public init(certificateChainPath: String, privateKeyPath: String) {
      self.certificateChainPath = certificateChainPath
      self.privateKeyPath = privateKeyPath
    }
  }

  /// Creates a configuration; every parameter defaults to what `sluice` runs with.
  public init(
    host: String = "127.0.0.1",
    grpcPort: Int = 8888,
    httpPort: Int = 8080,
    pace: Duration = .seconds(1),
    listCount: Int = 7,
    drainTimeout: Duration = .seconds(10),
    shutdownDelay: Duration = .zero,
    maxMessageBytes: Int = 4 << 20,
    allowedOrigins: [String] = [],
    webSocketPingInterval: Duration? = .seconds(30),
    publicDirectory: String? = nil,
    servesPublicFiles: Bool = true,
    grpcOnHTTPPort: Bool = false,
    bearerTokens: [String]? = nil,
    bearerCookie: String? = nil,
    maxJSONDepth: Int = 100,
    maxHeaderBytes: Int = 32 << 10,
    maxConcurrentRPCs: Int = 20_000,
    maxConnections: Int = 20_000,
    handshakeTimeout: Duration = .seconds(10),
    idleTimeout: Duration = .seconds(60),
    sendTimeout: Duration = .seconds(60),
    bodyTimeout: Duration = .seconds(30),
    maxBufferedRequestBytes: Int = 256 << 20,
    allowedHosts: [String] = [],
    allowGetCalls: Bool = true,
    grpc: GRPCPort = .defaults,
    echoMetadata: Bool = false,
    forwardBearer: Bool = false,
    interopService: Bool = false,
    tls: TLSFiles? = nil,
    hostsSeed: Bool = true,
    upstreams: [UpstreamRoute] = [],
    descriptorSets: [[UInt8]] = [],
    httpRules: [ConfiguredHTTPRule] = [],
    upstreamTLS: UpstreamTLS? = nil,
    upstreamReflection: Bool = false,
    otlpTraces: OTLPTraces? = nil
  ) {
    self.host = host
    self.grpcPort = grpcPort
    self.httpPort = httpPort
    self.pace = pace
    self.listCount = listCount
    self.drainTimeout = drainTimeout
    self.shutdownDelay = shutdownDelay
    self.maxMessageBytes = maxMessageBytes
    self.allowedOrigins = allowedOrigins
    self.webSocketPingInterval = webSocketPingInterval
    self.publicDirectory = publicDirectory
    self.servesPublicFiles = servesPublicFiles
    self.grpcOnHTTPPort = grpcOnHTTPPort
    self.bearerTokens = bearerTokens
    self.bearerCookie = bearerCookie
    self.maxJSONDepth = maxJSONDepth
    self.maxHeaderBytes = maxHeaderBytes
    self.maxConcurrentRPCs = maxConcurrentRPCs
    self.maxConnections = maxConnections
    self.handshakeTimeout = handshakeTimeout
    self.idleTimeout = idleTimeout
    self.sendTimeout = sendTimeout
    self.bodyTimeout = bodyTimeout
    self.maxBufferedRequestBytes = maxBufferedRequestBytes
    self.allowedHosts = allowedHosts
    self.allowGetCalls = allowGetCalls
    self.grpc = grpc
    self.echoMetadata = echoMetadata
    self.forwardBearer = forwardBearer
    self.interopService = interopService
    self.tls = tls
    self.hostsSeed = hostsSeed
    self.upstreams = upstreams
    self.descriptorSets = descriptorSets
    self.httpRules = httpRules
    self.upstreamTLS = upstreamTLS
    self.upstreamReflection = upstreamReflection
    self.otlpTraces = otlpTraces
  }
}

extension GatewayConfiguration {
  /// The deepest `maxJSONDepth` allowed: the codec reads nested JSON recursively.
  public static let maximumJSONDepth = 500

  /// Whether `allowedOrigins` is an allow list proper: set, and without `*`.
  public var hasOriginAllowList: Bool {
    !self.allowedOrigins.isEmpty && !self.allowedOrigins.contains("*")
  }
}

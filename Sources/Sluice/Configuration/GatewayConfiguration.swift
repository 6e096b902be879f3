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

  /// How long a graceful shutdown may take before open RPCs are cancelled.
  public var drainTimeout: Duration

  /// The largest message accepted in either direction on the JSON front ends: a WebSocket frame
  /// (after reassembling fragments), and a request or response message.
  public var maxMessageBytes: Int

  /// Origins (`scheme://host[:port]`) allowed to open WebSocket sessions and make CORS calls.
  /// Empty means the request's own host only. Requests without `Origin` are always allowed.
  public var allowedOrigins: [String]

  /// How long a WebSocket peer may be quiet before the server pings it; a peer that then sends
  /// nothing (not even the pong) for another interval is dropped. `nil` disables keepalive.
  public var webSocketPingInterval: Duration?

  /// The folder served on `GET /` (the browser page); `nil` serves no files.
  public var publicDirectory: String?

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

  /// How long a new HTTP-port connection may take to send its first request head (a WebSocket
  /// handshake or an HTTP request) before it is closed.
  public var handshakeTimeout: Duration

  /// How long a kept-alive HTTP connection may wait for its next request before it is closed.
  public var idleTimeout: Duration

  /// How long an HTTP-port connection may accept none of the gateway's writes (its client not
  /// reading) before it is closed and its RPC cancelled.
  public var sendTimeout: Duration

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
    maxMessageBytes: Int = 4 << 20,
    allowedOrigins: [String] = [],
    webSocketPingInterval: Duration? = .seconds(30),
    publicDirectory: String? = "public",
    bearerTokens: [String]? = nil,
    bearerCookie: String? = nil,
    maxJSONDepth: Int = 100,
    maxHeaderBytes: Int = 32 << 10,
    maxConcurrentRPCs: Int = 20_000,
    maxConnections: Int = 20_000,
    handshakeTimeout: Duration = .seconds(10),
    idleTimeout: Duration = .seconds(60),
    sendTimeout: Duration = .seconds(60),
    tls: TLSFiles? = nil
  ) {
    self.host = host
    self.grpcPort = grpcPort
    self.httpPort = httpPort
    self.pace = pace
    self.listCount = listCount
    self.drainTimeout = drainTimeout
    self.maxMessageBytes = maxMessageBytes
    self.allowedOrigins = allowedOrigins
    self.webSocketPingInterval = webSocketPingInterval
    self.publicDirectory = publicDirectory
    self.bearerTokens = bearerTokens
    self.bearerCookie = bearerCookie
    self.maxJSONDepth = maxJSONDepth
    self.maxHeaderBytes = maxHeaderBytes
    self.maxConcurrentRPCs = maxConcurrentRPCs
    self.maxConnections = maxConnections
    self.handshakeTimeout = handshakeTimeout
    self.idleTimeout = idleTimeout
    self.sendTimeout = sendTimeout
    self.tls = tls
  }
}

extension GatewayConfiguration {
  /// Whether `allowedOrigins` is an allow list proper: set, and without `*`.
  public var hasOriginAllowList: Bool {
    !self.allowedOrigins.isEmpty && !self.allowedOrigins.contains("*")
  }
}

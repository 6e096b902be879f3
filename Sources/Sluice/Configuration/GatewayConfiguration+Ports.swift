extension GatewayConfiguration {
  /// The native gRPC port's number, HTTP/2 settings and connection management.
  public struct GRPCPort: Sendable {
    /// The native gRPC (HTTP/2, h2c) port; 0 picks a free one. The seed's port is 8888.
    public var port: Int
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

    public init(
      port: Int = 8888,
      maxConcurrentStreams: Int = 1000,
      maxConnectionIdle: Duration? = .seconds(300),
      maxConnectionAge: Duration? = nil,
      maxConnectionAgeGrace: Duration? = nil,
      initialWindowSize: Int = 1 << 20,
      maxFrameSize: Int = 1 << 14,
      maxHeaderListSize: Int = 16 << 10
    ) {
      self.port = port
      self.maxConcurrentStreams = maxConcurrentStreams
      self.maxConnectionIdle = maxConnectionIdle
      self.maxConnectionAge = maxConnectionAge
      self.maxConnectionAgeGrace = maxConnectionAgeGrace
      self.initialWindowSize = initialWindowSize
      self.maxFrameSize = maxFrameSize
      self.maxHeaderListSize = maxHeaderListSize
    }

    /// Port 8888, grpc-go's stream limit, 5 minutes of idleness, no age limit, a 1 MiB window,
    /// HTTP/2's default frame size and 16 KiB of metadata.
    public static let defaults = GRPCPort()
  }

  /// The HTTP/1.1 port: WebSocket sessions, HTTP JSON, gRPC-Web, Connect and REST calls, the page
  /// and `/metrics`.
  public struct HTTPPort: Sendable {
    /// The port; 0 picks a free one.
    public var port: Int
    /// Whether this port also serves native gRPC (HTTP/2 by prior knowledge, or ALPN `h2` /
    /// `grpc-exp` under TLS), so one port carries every transport. The gRPC port stays open.
    public var servesGRPC: Bool
    /// The largest request head (all header names and values) accepted, and the most metadata a
    /// WebSocket `$metadata` frame may carry.
    public var maxHeaderBytes: Int
    /// How long a kept-alive connection may wait for its next request before it is closed.
    public var idleTimeout: Duration
    /// How long a connection may accept none of the gateway's writes (its client not reading)
    /// before it is closed and its RPC cancelled.
    public var sendTimeout: Duration
    /// Whether server-streaming methods answer `GET ?request=` (for `EventSource`). Such a GET is
    /// a "simple" cross-site request: any page can make a visitor's browser send one (its answer
    /// is not readable across origins, but the RPC runs).
    public var allowGetCalls: Bool
    /// Whether `GET /` serves files at all.
    public var servesPublicFiles: Bool
    /// The folder served on `GET /` (the browser page); `nil` serves the copy of `public/` built
    /// into the binary.
    public var publicDirectory: String?

    public init(
      port: Int = 8080,
      servesGRPC: Bool = false,
      maxHeaderBytes: Int = 32 << 10,
      idleTimeout: Duration = .seconds(60),
      sendTimeout: Duration = .seconds(60),
      allowGetCalls: Bool = true,
      servesPublicFiles: Bool = true,
      publicDirectory: String? = nil
    ) {
      self.port = port
      self.servesGRPC = servesGRPC
      self.maxHeaderBytes = maxHeaderBytes
      self.idleTimeout = idleTimeout
      self.sendTimeout = sendTimeout
      self.allowGetCalls = allowGetCalls
      self.servesPublicFiles = servesPublicFiles
      self.publicDirectory = publicDirectory
    }

    /// Port 8080, 32 KiB heads, a minute idle or unread, GET calls on, the built-in page.
    public static let defaults = HTTPPort()
  }

  /// WebSocket sessions.
  public struct WebSocket: Sendable {
    /// How long a peer may be quiet before the server pings it; a peer that then sends nothing
    /// (not even the pong) for another interval is dropped. `nil` disables keepalive.
    public var pingInterval: Duration?
    /// The most streams open at once in one multiplexed session; a `start` past it ends its
    /// stream with `RESOURCE_EXHAUSTED`.
    public var maxStreamsPerSession: Int

    public init(pingInterval: Duration? = .seconds(30), maxStreamsPerSession: Int = 100) {
      self.pingInterval = pingInterval
      self.maxStreamsPerSession = maxStreamsPerSession
    }

    /// A ping after 30 s of quiet, 100 streams per multiplexed session.
    public static let defaults = WebSocket()
  }
}

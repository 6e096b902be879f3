extension GatewayConfiguration {
  /// What every call shares, on every transport; the engine (`RPCEngine`) and the JSON codec read
  /// it.
  public struct Calls: Sendable {
    /// RPCs allowed to run at once, over every transport; more get `RESOURCE_EXHAUSTED`.
    public var maxConcurrentRPCs: Int
    /// The largest message accepted in either direction on the JSON front ends: a WebSocket frame
    /// (after reassembling fragments), and a request or response message.
    public var maxMessageBytes: Int
    /// The most bytes of unfinished request messages (bodies, NDJSON lines, WebSocket frames and
    /// fragments still arriving) held over every connection at once; a message that would go
    /// past it is refused with `RESOURCE_EXHAUSTED` (HTTP 503), so slow uploads cannot exhaust
    /// memory.
    public var maxBufferedRequestBytes: Int
    /// How long one request message may take to arrive once it has begun: an HTTP request body
    /// (from its head), an NDJSON line, a WebSocket message's frames and fragments. A client that
    /// trickles a message in is answered 408 (HTTP) or `DEADLINE_EXCEEDED` (WebSocket) and
    /// closed.
    public var bodyTimeout: Duration
    /// The deepest nesting of JSON arrays and objects accepted in a request.
    public var maxJSONDepth: Int
    /// A debugging aid: every RPC's response headers repeat its request metadata as
    /// `echo-<key>`.
    public var echoMetadata: Bool

    public init(
      maxConcurrentRPCs: Int = 20_000,
      maxMessageBytes: Int = 4 << 20,
      maxBufferedRequestBytes: Int = 256 << 20,
      bodyTimeout: Duration = .seconds(30),
      maxJSONDepth: Int = 100,
      echoMetadata: Bool = false
    ) {
      self.maxConcurrentRPCs = maxConcurrentRPCs
      self.maxMessageBytes = maxMessageBytes
      self.maxBufferedRequestBytes = maxBufferedRequestBytes
      self.bodyTimeout = bodyTimeout
      self.maxJSONDepth = maxJSONDepth
      self.echoMetadata = echoMetadata
    }

    /// 20,000 RPCs, 4 MiB messages, 256 MiB of unfinished requests, 30 s per message, JSON 100
    /// deep, no echo.
    public static let defaults = Calls()

    /// The deepest `maxJSONDepth` allowed: the codec reads nested JSON recursively.
    public static let maximumJSONDepth = 500
  }

  /// Bearer tokens, and how they travel.
  public struct Auth: Sendable {
    /// Bearer tokens every RPC must present (`authorization: Bearer <token>`) on every transport;
    /// `nil` requires none.
    public var bearerTokens: [String]?
    /// With bearer tokens: whether the `authorization` the gateway verified goes on to services
    /// and upstreams (it does not by default, as Envoy's `jwt_authn` with `forward: false`).
    public var forwardBearer: Bool
    /// A cookie whose value a WebSocket handshake without `Authorization` (or a `bearer.`
    /// subprotocol) may present as its bearer token. Honoured only with an Origin allow list
    /// (`Origins.hasAllowList`): browsers send cookies with every handshake, so a page on another
    /// site could otherwise open sessions with its visitors' credentials.
    public var bearerCookie: String?

    public init(bearerTokens: [String]? = nil, forwardBearer: Bool = false, bearerCookie: String? = nil) {
      self.bearerTokens = bearerTokens
      self.forwardBearer = forwardBearer
      self.bearerCookie = bearerCookie
    }

    /// No token required.
    public static let defaults = Auth()
  }

  /// Which browser origins and host names may reach the gateway (both ports: WebSocket
  /// handshakes, CORS calls, gRPC-Web and Connect from pages).
  public struct Origins: Sendable {
    /// Origins (`scheme://host[:port]`) allowed to open WebSocket sessions and make CORS calls.
    /// Empty means the request's own host only. Requests without `Origin` are always allowed.
    public var allowed: [String]
    /// Host names (`Host` header, without port) that a browser page may use to reach the gateway
    /// when no Origin allow list is set, besides its bind address, `localhost`, `127.0.0.1` and
    /// `[::1]`. Guards the same-origin rule against DNS rebinding.
    public var hosts: [String]

    public init(allowed: [String] = [], hosts: [String] = []) {
      self.allowed = allowed
      self.hosts = hosts
    }

    /// Same origin only.
    public static let defaults = Origins()

    /// Whether `allowed` is an allow list proper: set, and without `*`.
    public var hasAllowList: Bool {
      !self.allowed.isEmpty && !self.allowed.contains("*")
    }
  }
}

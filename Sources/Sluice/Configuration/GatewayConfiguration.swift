/// Everything a `Gateway` needs to know, nested by the part of the gateway that reads it, with the
/// defaults in one place (`GatewayConfiguration.defaults`, and each part's `.defaults`).
///
/// Each consumer is handed its own parts: the ports their `listener` and port settings, the
/// engine its `calls` and `auth`, the hosted services their `services`. The `sluice` command fills
/// it from its flags (`ServeCommand+Configuration.swift`); tests start from `.defaults` and change
/// what they need (usually ports 0 and no pace):
///
/// ```swift
/// var configuration = GatewayConfiguration.defaults
/// configuration.grpc.port = 0
/// configuration.http.port = 0
/// configuration.services.pace = .zero
/// ```
public struct GatewayConfiguration: Sendable {
  /// What both ports share: the address, TLS, connection limits and the handshake deadline.
  public var listener: Listener

  /// What every call shares, on every transport: admission, message and buffer limits, the body
  /// deadline, JSON depth.
  public var calls: Calls

  /// Bearer tokens, and how they travel.
  public var auth: Auth

  /// Which browser origins and host names may reach the gateway.
  public var origins: Origins

  /// The native gRPC port: its number and its HTTP/2 and connection management settings.
  public var grpc: GRPCPort

  /// The HTTP/1.1 port: its number, its connections and what it serves besides RPCs.
  public var http: HTTPPort

  /// WebSocket sessions on the HTTP port.
  public var webSocket: WebSocket

  /// What the gateway hosts itself, and the descriptors and REST rules it translates with.
  public var services: Services

  /// The gRPC servers behind the gateway.
  public var upstream: Upstream

  /// How a graceful shutdown runs.
  public var shutdown: Shutdown

  /// `--otlp-endpoint`: where a span per RPC is exported with OTLP; nil for none.
  public var tracing: OTLPTraces?

  /// Creates a configuration; every part defaults to what `sluice` runs with.
  public init(
    listener: Listener = .defaults,
    calls: Calls = .defaults,
    auth: Auth = .defaults,
    origins: Origins = .defaults,
    grpc: GRPCPort = .defaults,
    http: HTTPPort = .defaults,
    webSocket: WebSocket = .defaults,
    services: Services = .defaults,
    upstream: Upstream = .defaults,
    shutdown: Shutdown = .defaults,
    tracing: OTLPTraces? = nil
  ) {
    self.listener = listener
    self.calls = calls
    self.auth = auth
    self.origins = origins
    self.grpc = grpc
    self.http = http
    self.webSocket = webSocket
    self.services = services
    self.upstream = upstream
    self.shutdown = shutdown
    self.tracing = tracing
  }

  /// What `sluice` runs with when given no flags.
  public static let defaults = GatewayConfiguration()
}

extension GatewayConfiguration {
  /// What both ports share.
  public struct Listener: Sendable {
    /// The address both ports bind to. `127.0.0.1` keeps the gateway local; `0.0.0.0` or `::`
    /// expose it.
    public var host: String
    /// PEM files for TLS on both ports (`https`/`wss` and gRPC over TLS with ALPN h2); `nil`
    /// serves plaintext.
    public var tls: TLSFiles?
    /// Connections allowed open at once on each port; more get 503 on the HTTP port and are
    /// closed on the gRPC port.
    public var maxConnections: Int
    /// How long a new connection may take to send its first request head (HTTP port: a WebSocket
    /// handshake or an HTTP request) or its HTTP/2 preface and SETTINGS (gRPC port) before it is
    /// closed.
    public var handshakeTimeout: Duration

    public init(
      host: String = "127.0.0.1",
      tls: TLSFiles? = nil,
      maxConnections: Int = 20_000,
      handshakeTimeout: Duration = .seconds(10)
    ) {
      self.host = host
      self.tls = tls
      self.maxConnections = maxConnections
      self.handshakeTimeout = handshakeTimeout
    }

    /// Local only, plaintext, 20,000 connections per port, 10 s to the first request.
    public static let defaults = Listener()
  }

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

  /// How a graceful shutdown runs: first health turns NOT_SERVING for `delay`, then the ports
  /// drain for at most `drainTimeout` before open RPCs are cancelled.
  public struct Shutdown: Sendable {
    /// How long the gateway keeps serving after health turned NOT_SERVING, before the ports begin
    /// to drain: time for load balancers watching health to stop sending.
    public var delay: Duration
    /// How long the drain may take before open RPCs are cancelled (after `delay`).
    public var drainTimeout: Duration

    public init(delay: Duration = .zero, drainTimeout: Duration = .seconds(10)) {
      self.delay = delay
      self.drainTimeout = drainTimeout
    }

    /// No delay, 10 s of drain.
    public static let defaults = Shutdown()
  }

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
}

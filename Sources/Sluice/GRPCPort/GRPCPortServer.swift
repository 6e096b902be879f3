internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOPosix
internal import NIOSSL
internal import ServiceLifecycle
internal import Synchronization

/// The native gRPC port: every call served as a `GRPCStream` of its connection's
/// `GRPCServerConnection` (libnghttp2), on the connection's event loop.
///
/// Each connection's pipeline: TLS (when configured), then `GRPCServerConnection`, which also keeps
/// idle and age GOAWAY, grace, keepalive pings, the two-phase GOAWAY of a graceful shutdown,
/// grpc-go's PING policy, and the handshake timer.
///
/// A graceful shutdown closes the listener and asks every connection to quiesce: GOAWAY, then
/// open streams end with `UNAVAILABLE` (unary calls finish), and the service returns once every
/// connection has closed; the service group's drain timeout cancels it, which closes what is left.
final class GRPCPortServer: Service {

  private let listening: GatewayConfiguration.Listener
  private let port: Int
  private let settings: GRPCServerConnection.Settings
  private let engine: RPCEngine
  private let router: ExchangeRouter
  private let metrics: GatewayMetrics
  private let logger: Logger
  private let boundPort = BoundPort()
  private let listener = Mutex<(any Channel)?>(nil)
  private let connections = ConnectionTracker()

  init(
    listener: GatewayConfiguration.Listener,
    grpc: GatewayConfiguration.GRPCPort,
    engine: RPCEngine,
    router: ExchangeRouter,
    metrics: GatewayMetrics,
    logger: Logger
  ) {
    self.listening = listener
    self.port = grpc.port
    self.settings = Self.nghttp2Settings(grpc, handshakeTimeout: listener.handshakeTimeout)
    self.engine = engine
    self.router = router
    self.metrics = metrics
    self.logger = logger
  }

  /// The bound port, once listening.
  func boundPortNumber() async throws -> Int {
    try await self.boundPort.value()
  }

  func run() async throws {
    let listener: any Channel
    do {
      listener = try await self.bind()
      self.boundPort.resolve(.success(listener.localAddress?.port ?? 0))
    } catch {
      self.boundPort.resolve(.failure(error))
      throw error
    }
    self.listener.withLock { $0 = listener }
    try await withTaskCancellationHandler {
      try await withGracefulShutdownHandler {
        try await listener.closeFuture.get()
        try await self.connections.drained()
      } onGracefulShutdown: {
        // GOAWAY, then open streams end with UNAVAILABLE (unary calls finish).
        self.listener.withLock { $0 }?.close(promise: nil)
        self.connections.quiesce()
      }
    } onCancel: {
      self.listener.withLock { $0 }?.close(promise: nil)
      self.connections.closeAll()
    }
  }

  // MARK: - Connections

  private func bind() async throws -> any Channel {
    let configuration = self.listening
    let tls = try configuration.tls.map { try TLSServerContext.make($0, applicationProtocols: ["h2", "grpc-exp"]) }
    let connections = ConnectionCounter(limit: configuration.maxConnections)
    return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.backlog, value: 256)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { channel in
        guard connections.admit(channel) else {
          // Over --max-connections: closed at once; the client sees UNAVAILABLE and retries.
          return channel.close()
        }
        return channel.eventLoop.makeCompletedFuture {
          try self.configure(channel, tls: tls)
        }
      }
      .bind(host: configuration.host, port: self.port)
      .get()
  }

  private func configure(_ channel: any Channel, tls: NIOSSLContext?) throws {
    guard self.connections.admit(channel) else {
      channel.close(promise: nil)
      return
    }
    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
    // HTTP/2 by its preface; an HTTP/1.1 client is told to use the HTTP port.
    try channel.pipeline.syncOperations.addHandler(
      HTTPVersionSniffer(timeout: TimeAmount(self.listening.handshakeTimeout)) { isHTTP2 in
        if isHTTP2 {
          try self.addHTTP2Connection(to: channel)
        } else {
          try channel.pipeline.syncOperations.addHandler(NativePortHTTP1Answer())
        }
      }
    )
  }

  /// Serves native gRPC on `channel` from here on: its HTTP/2 layer and streams, at the end of the
  /// pipeline. Also used by the HTTP port with `--grpc-on-http-port`, once it has seen the HTTP/2
  /// preface.
  func addHTTP2Connection(to channel: any Channel) throws {
    try channel.pipeline.syncOperations.addHandler(
      GRPCServerConnection(
        engine: self.engine, router: self.router, channel: channel, secure: self.listening.tls != nil,
        settings: self.settings))
    self.metrics.connectionOpened(.grpc)
    channel.closeFuture.whenComplete { _ in self.metrics.connectionClosed(.grpc) }
  }

  // MARK: - HTTP/2 settings

  /// The HTTP/2 settings and connection management of a native-port connection.
  static func nghttp2Settings(_ grpc: GatewayConfiguration.GRPCPort, handshakeTimeout: Duration)
    -> GRPCServerConnection.Settings
  {
    GRPCServerConnection.Settings(
      http2: HTTP2Session.Settings(
        maxConcurrentStreams: grpc.maxConcurrentStreams,
        initialWindowSize: grpc.initialWindowSize,
        maxFrameSize: grpc.maxFrameSize,
        maxHeaderListSize: grpc.maxHeaderListSize,
        connectionWindow: grpc.initialWindowSize
      ),
      management: HTTP2ConnectionManager.Configuration(
        handshakeTimeout: TimeAmount(handshakeTimeout),
        maxIdle: grpc.maxConnectionIdle.map { TimeAmount($0) },
        maxAge: grpc.maxConnectionAge.map { TimeAmount($0) },
        maxAgeGrace: grpc.maxConnectionAgeGrace.map { TimeAmount($0) }
      )
    )
  }
}

internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHTTP2
internal import NIOPosix
internal import NIOSSL
internal import ServiceLifecycle
internal import Synchronization

/// The native gRPC port: swift-nio-http2 used directly, every call served as a `GRPCStream` of
/// its connection's `GRPCConnectionHandler`, on the connection's event loop.
///
/// Each connection's pipeline: TLS (when configured), `NIOHTTP2Handler` (the settings below, no
/// stream multiplexer: no channel per stream), swift-nio-http2's
/// `NIOHTTP2ServerConnectionManagementHandler` (idle and age GOAWAY, grace, keepalive pings, and
/// the two-phase GOAWAY of a graceful shutdown), grpc-go's PING policy, and the handshake timer.
///
/// A graceful shutdown closes the listener and asks every connection to quiesce: GOAWAY, then
/// open streams end with `UNAVAILABLE` (unary calls finish), and the service returns once every
/// connection has closed; the service group's drain timeout cancels it, which closes what is left.
final class GRPCPortServer: Service {

  private let configuration: GatewayConfiguration
  private let port: RPCEngine
  private let metrics: GatewayMetrics
  private let logger: Logger
  private let boundPort = BoundPort()
  private let listener = Mutex<(any Channel)?>(nil)
  private let connections = ConnectionTracker()

  init(configuration: GatewayConfiguration, port: RPCEngine, metrics: GatewayMetrics, logger: Logger) {
    self.configuration = configuration
    self.port = port
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
    let configuration = self.configuration
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
      .bind(host: configuration.host, port: configuration.grpcPort)
      .get()
  }

  private func configure(_ channel: any Channel, tls: NIOSSLContext?) throws {
    guard self.connections.admit(channel) else {
      channel.close(promise: nil)
      return
    }
    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
    try self.addHTTP2Connection(to: channel)
  }

  /// Serves native gRPC on `channel` from here on: its HTTP/2 layer and streams, at the end of the
  /// pipeline. Also used by the HTTP port with `--grpc-on-http-port`, once it has seen the HTTP/2
  /// preface.
  func addHTTP2Connection(to channel: any Channel) throws {
    let configuration = self.configuration
    let pipeline = channel.pipeline.syncOperations
    if configuration.grpc.http2 == .nghttp2 {
      try pipeline.addHandler(
        NGHTTP2Connection(port: self.port, channel: channel, settings: Self.nghttp2Settings(configuration)))
      self.metrics.connectionOpened(.grpc)
      channel.closeFuture.whenComplete { _ in self.metrics.connectionClosed(.grpc) }
      return
    }
    let management = NIOHTTP2ServerConnectionManagementHandler(
      eventLoop: channel.eventLoop,
      configuration: .init(
        maxIdleTime: configuration.grpc.maxConnectionIdle.map { TimeAmount($0) },
        maxAge: configuration.grpc.maxConnectionAge.map { TimeAmount($0) },
        maxGraceTime: configuration.grpc.maxConnectionAgeGrace.map { TimeAmount($0) },
        keepalive: .init(pingInterval: .hours(2), ackTimeout: .seconds(20))
      )
    )
    let port = self.port
    let pingPolicy = PingPolicyHandler()
    // No stream multiplexer: GRPCConnectionHandler serves the streams from this pipeline.
    let http2 = NIOHTTP2Handler(
      mode: .server,
      connectionConfiguration: Self.connectionConfiguration(configuration.grpc)
    )
    try pipeline.addHandler(http2)
    try pipeline.addHandler(management)
    try pipeline.addHandler(pingPolicy)
    // The preface and the client's SETTINGS within --handshake-timeout, or the socket is closed.
    try pipeline.addHandler(
      HandshakeTimeout<HTTP2Frame>(timeout: TimeAmount(configuration.handshakeTimeout)) { _ in true }
    )
    try pipeline.addHandler(
      GRPCConnectionHandler(
        port: port,
        channel: channel,
        targetWindow: configuration.grpc.initialWindowSize,
        activity: pingPolicy.activity
      )
    )
    try pipeline.addHandler(ConnectionErrorHandler(logger: self.logger))
    self.metrics.connectionOpened(.grpc)
    channel.closeFuture.whenComplete { _ in self.metrics.connectionClosed(.grpc) }
  }

  // MARK: - HTTP/2 settings

  /// The same settings and timers for an nghttp2 connection.
  static func nghttp2Settings(_ configuration: GatewayConfiguration) -> NGHTTP2Connection.Settings {
    let grpc = configuration.grpc
    return NGHTTP2Connection.Settings(
      maxConcurrentStreams: grpc.maxConcurrentStreams,
      initialWindowSize: grpc.initialWindowSize,
      maxFrameSize: grpc.maxFrameSize,
      maxHeaderListSize: grpc.maxHeaderListSize,
      handshakeTimeout: TimeAmount(configuration.handshakeTimeout),
      maxIdle: grpc.maxConnectionIdle.map { TimeAmount($0) },
      maxAge: grpc.maxConnectionAge.map { TimeAmount($0) },
      maxAgeGrace: grpc.maxConnectionAgeGrace.map { TimeAmount($0) }
    )
  }

  /// The connection's settings: those gRPC servers advertise, and the DoS limits relaxed where
  /// grpc-go's default clients would trip them.
  static func connectionConfiguration(_ grpc: GatewayConfiguration.GRPCPort) -> NIOHTTP2Handler.ConnectionConfiguration
  {
    var connection = NIOHTTP2Handler.ConnectionConfiguration()
    connection.initialSettings = [
      HTTP2Setting(parameter: .maxConcurrentStreams, value: grpc.maxConcurrentStreams),
      HTTP2Setting(parameter: .initialWindowSize, value: grpc.initialWindowSize),
      HTTP2Setting(parameter: .maxFrameSize, value: grpc.maxFrameSize),
      HTTP2Setting(parameter: .maxHeaderListSize, value: grpc.maxHeaderListSize),
    ]
    // grpc-go's default clients send a PING with most reads while their window estimate grows
    // (BDP probing), thousands a second on a fast link; swift-nio-http2's default of 200
    // PING/SETTINGS frames per 30 s closed them with ENHANCE_YOUR_CALM. PINGs are policed by
    // `PingPolicy` (grpc-go's rule) instead; this stays as a backstop for SETTINGS floods.
    connection.controlFrameRateLimit.maximumCount = 250_000
    connection.controlFrameRateLimit.windowLength = .seconds(10)
    return connection
  }
}

/// The last handler of a connection: closes it on a connection error (swift-nio-http2 has
/// written its GOAWAY and leaves the closing to the pipeline), one loop tick later so that the
/// GOAWAY goes out first, and logs errors at debug level rather than NIO's "unhandled error".
///
/// Two errors are not the connection's: a stream's write that raced the client's reset of that
/// stream (`NoSuchStream`, `StreamClosed`). Those leave the connection open.
private final class ConnectionErrorHandler: ChannelInboundHandler {
  typealias InboundIn = HTTP2Frame

  private let logger: Logger

  init(logger: Logger) {
    self.logger = logger
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    self.logger.debug("gRPC connection error", metadata: ["sluice.error": "\(error)"])
    switch error {
    case is NIOHTTP2Errors.NoSuchStream, is NIOHTTP2Errors.StreamClosed:
      return
    default:
      let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
      context.eventLoop.execute { loopBound.value.close(promise: nil) }
    }
  }
}

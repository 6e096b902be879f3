public import GRPCCore
internal import GRPCInProcessTransport
internal import GRPCNIOTransportHTTP2Posix
public import Logging
internal import NIOCore
internal import NIOHTTP2
internal import NIOSSL
internal import ServiceLifecycle
internal import SluiceCodec
internal import SluiceProtos
public import UnixSignals

/// The Sluice process: every front end and the hosted services, run as one `ServiceGroup`.
///
/// ```swift
/// let gateway = Gateway(configuration: .init(grpcPort: 0), logger: logger)
/// try await gateway.run()  // until SIGTERM/SIGINT or `beginGracefulShutdown()`
/// ```
public final class Gateway: Sendable {
  /// The configuration the gateway was made with.
  public let configuration: GatewayConfiguration

  /// Counts the RPCs in flight on the hosted services.
  public let monitor: RPCMonitor

  /// The metrics served on `GET /metrics`.
  public let metrics: GatewayMetrics

  private let grpcTransport: HTTP2ServerTransport.Posix
  private let httpFrontEnd: HTTPFrontEnd
  private let serviceGroup: ServiceGroup
  private let logger: Logger

  /// Creates a gateway; nothing is bound until `run()`.
  /// - Parameters:
  ///   - configuration: Ports, pace and limits.
  ///   - logger: The root logger.
  ///   - shutdownSignals: Signals that start a graceful shutdown (the command passes SIGTERM and
  ///     SIGINT; tests pass none and call `beginGracefulShutdown()`).
  ///   - interceptors: Extra server interceptors, run after the gateway's own, for every RPC.
  public init(
    configuration: GatewayConfiguration,
    logger: Logger,
    shutdownSignals: [UnixSignal] = [],
    interceptors: [any ServerInterceptor] = []
  ) throws {
    self.configuration = configuration
    self.logger = logger
    self.metrics = GatewayMetrics()
    self.monitor = RPCMonitor(metrics: self.metrics, logger: logger)

    let services = HostedServices.make(configuration: configuration, logger: logger)
    let grpcConnections = ConnectionCounter(limit: configuration.maxConnections)
    let metrics = self.metrics
    // TLS on the gRPC port is Sluice's own handler, first in each connection's pipeline, so that
    // both ports share one TLS policy (the transport's own TLS cannot restrict cipher suites).
    let grpcTLS = try configuration.tls.map { try TLSServerContext.make($0, applicationProtocols: ["h2", "grpc-exp"]) }
    let handshakeTimeout = TimeAmount(configuration.handshakeTimeout)
    self.grpcTransport = HTTP2ServerTransport.Posix(
      address: Self.bindAddress(host: configuration.host, port: configuration.grpcPort),
      transportSecurity: .plaintext,
      config: .defaults { config in
        // Keepalive: accept client pings at any rate. grpc-swift counts pings that arrive while it
        // writes long responses as strikes and closes the connection (grpc/grpc-swift-2#5);
        // swift-nio-http2 still caps PING/SETTINGS frames at 200 per 30 s per connection.
        config.connection.keepalive.clientBehavior = .init(minPingIntervalWithoutCalls: .zero, allowWithoutCalls: true)
        config.connection.maxIdleTime = configuration.grpc.maxConnectionIdle
        config.connection.maxAge = configuration.grpc.maxConnectionAge
        config.connection.maxGraceTime = configuration.grpc.maxConnectionAgeGrace
        config.http2.maxConcurrentStreams = configuration.grpc.maxConcurrentStreams
        config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
          // Count connections for /metrics and refuse those past `--max-connections`: the
          // transport has no limit of its own, and this callback is its only hook on accepted
          // connections. A refused client sees its connection closed (UNAVAILABLE) and retries.
          guard grpcConnections.admit(channel) else {
            channel.close(promise: nil)  // failing the future alone left it open (grpcio waited out its deadline)
            return channel.eventLoop.makeFailedFuture(
              RPCError(code: .resourceExhausted, message: "over --max-connections (\(grpcConnections.limit))"))
          }
          metrics.connectionOpened(.grpc)
          channel.closeFuture.whenComplete { _ in metrics.connectionClosed(.grpc) }
          return channel.eventLoop.makeCompletedFuture {
            let pipeline = channel.pipeline.syncOperations
            if let grpcTLS { try pipeline.addHandler(NIOSSLServerHandler(context: grpcTLS), position: .first) }
            // The preface and the client's SETTINGS within --handshake-timeout: the transport's
            // only timer is keepalive (2 h), so silent sockets could otherwise fill the port.
            try pipeline.addHandler(
              HandshakeTimeout<HTTP2Frame>(timeout: handshakeTimeout) { _ in true },
              position: .after(try pipeline.handler(type: NIOHTTP2Handler.self))
            )
          }
        }
        config.channelDebuggingCallbacks.onAcceptHTTP2Stream = { stream in
          stream.eventLoop.makeCompletedFuture {
            try stream.pipeline.syncOperations.addHandler(GRPCRequestFilter(logger: logger), position: .first)
          }
        }
      }
    )
    // The monitor first (it sees refused calls too), then authentication, before anything else.
    let authentication: [any ServerInterceptor] =
      configuration.bearerTokens.map { [BearerAuthenticator(tokens: $0)] } ?? []
    let limiter = RPCLimiter(limit: configuration.maxConcurrentRPCs)
    let serverInterceptors: [any ServerInterceptor] =
      [self.monitor, limiter] + authentication + [CancellationPropagator()] + interceptors
    let grpcServer = GRPCServer(transport: self.grpcTransport, services: services, interceptors: serverInterceptors)

    // The JSON front ends reach the same services through a GRPCClient over the in-process
    // transport; pointing them at an upstream backend is a matter of giving them another client.
    let inProcess = InProcessTransport()
    let callControl = InProcessCallControl()
    let inProcessServer = GRPCServer(
      transport: inProcess.server,
      services: services,
      interceptors: [self.monitor, limiter] + authentication + [callControl, CancellationPropagator()] + interceptors
    )
    let client = GRPCClient(transport: inProcess.client)
    let registry = try DescriptorRegistry(fileDescriptorSet: SluiceDescriptors.fileDescriptorSet)
    let codec = JSONCodec(
      registry: registry,
      decoding: .init(maximumDepth: configuration.maxJSONDepth, maximumBytes: configuration.maxMessageBytes))
    self.httpFrontEnd = HTTPFrontEnd(
      bridge: JSONBridge(
        registry: registry,
        codec: codec,
        caller: client,
        callControl: callControl
      ),
      configuration: configuration,
      metrics: self.metrics,
      logger: logger
    )

    // Graceful shutdown runs in reverse order: front ends first, the in-process server last.
    var groupConfiguration = ServiceGroupConfiguration(
      services: [
        .init(service: GRPCServerService(server: inProcessServer)),
        .init(service: GRPCClientService(client: client)),
        .init(service: GRPCServerService(server: grpcServer)),
        .init(service: self.httpFrontEnd),
      ],
      gracefulShutdownSignals: shutdownSignals,
      logger: logger
    )
    groupConfiguration.maximumGracefulShutdownDuration = configuration.drainTimeout
    self.serviceGroup = ServiceGroup(configuration: groupConfiguration)
  }

  /// Serves until a shutdown signal, `beginGracefulShutdown()` or cancellation, logging the
  /// addresses it bound once they are known.
  public func run() async throws {
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await self.serviceGroup.run() }
      let port = try await self.grpcPort()
      self.logger.info(
        self.configuration.tls == nil ? "Serving native gRPC (h2c)" : "Serving native gRPC (HTTP/2 over TLS)",
        metadata: ["sluice.grpc.address": "\(self.configuration.host):\(port)"]
      )
    }
  }

  /// The native gRPC port, once bound (the chosen one when the configuration asked for 0).
  public func grpcPort() async throws -> Int {
    let address = try await self.grpcTransport.listeningAddress
    if let ipv4 = address.ipv4 { return ipv4.port }
    if let ipv6 = address.ipv6 { return ipv6.port }
    throw RPCError(code: .internalError, message: "gRPC transport bound a non-IP address: \(address)")
  }

  /// The HTTP/1.1 (WebSocket and JSON) port, once bound.
  public func httpPort() async throws -> Int {
    try await self.httpFrontEnd.port()
  }

  /// Starts a graceful shutdown: no new connections or RPCs; open streams end with `UNAVAILABLE`;
  /// `run()` returns once everything has stopped (or the drain timeout cancels what is left).
  public func beginGracefulShutdown() async {
    await self.serviceGroup.triggerGracefulShutdown()
  }

  private static func bindAddress(host: String, port: Int) -> GRPCNIOTransportCore.SocketAddress {
    host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
  }
}

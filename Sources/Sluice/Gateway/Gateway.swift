public import GRPCCore
internal import GRPCInProcessTransport
public import Logging
internal import NIOCore
internal import NIOHTTP2
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

  private let grpcServer: GRPCPortServer
  private let httpFrontEnd: HTTPFrontEnd
  private let serviceGroup: ServiceGroup
  private let logger: Logger

  /// Creates a gateway; nothing is bound until `run()`.
  /// - Parameters:
  ///   - configuration: Ports, pace and limits.
  ///   - logger: The root logger.
  ///   - shutdownSignals: Signals that start a graceful shutdown (the command passes SIGTERM and
  ///     SIGINT; tests pass none and call `beginGracefulShutdown()`).
  ///   - interceptors: Extra server interceptors, run after the gateway's own, for every RPC of the
  ///     JSON front ends (the native port runs on the engine, which has no interceptors).
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
    let limiter = RPCLimiter(limit: configuration.maxConcurrentRPCs)
    let authenticator = configuration.bearerTokens.map { BearerAuthenticator(tokens: $0) }
    // The native port: Sluice's own engine on swift-nio-http2, the seed services as event-loop
    // handlers; limits, auth and metrics shared with the JSON front ends.
    var methods = SeedMethods.make(configuration: configuration, logger: logger)
    if configuration.interopService {
      methods += InteropMethods.make(maximumMessageBytes: configuration.maxMessageBytes)
    }
    self.grpcServer = GRPCPortServer(
      configuration: configuration,
      port: GRPCPortContext(
        router: RPCRouter(methods),
        limiter: limiter,
        monitor: self.monitor,
        authenticator: authenticator,
        maximumMessageBytes: configuration.maxMessageBytes,
        echoMetadata: configuration.echoMetadata,
        logger: logger
      ),
      metrics: self.metrics,
      logger: logger
    )
    // The monitor first (it sees refused calls too), then authentication, before anything else.
    let authentication: [any ServerInterceptor] = authenticator.map { [$0] } ?? []
    let interceptors = interceptors + (configuration.echoMetadata ? [MetadataEcho()] : [])

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
        .init(service: self.grpcServer),
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
    try await self.grpcServer.boundPortNumber()
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
}

public import Logging
internal import NIOCore
internal import NIOPosix
internal import OTel
internal import ServiceLifecycle
internal import SluiceCodec
internal import SluiceProtos
public import UnixSignals

/// The Sluice process: every front end and the hosted services, run as one `ServiceGroup`.
///
/// ```swift
/// let gateway = Gateway(configuration: .init(grpc: .init(port: 0)), logger: logger)
/// try await gateway.run()  // until SIGTERM/SIGINT or `beginGracefulShutdown()`
/// ```
public final class Gateway: Sendable {
  /// The configuration the gateway was made with.
  public let configuration: GatewayConfiguration

  /// Counts the RPCs in flight on the hosted services.
  public let monitor: RPCMonitor

  /// The metrics served on `GET /metrics`.
  public let metrics: GatewayMetrics

  private let bridges: JSONBridgeSource
  private let catalog: ServiceCatalog
  private let health: HealthState
  /// What `useDescriptors` (and the reflection refresh) updates.
  private let descriptorParts: DescriptorParts
  private let grpcServer: GRPCPortServer
  private let httpFrontEnd: HTTPFrontEnd
  private let serviceGroup: ServiceGroup
  /// `--upstream-reflection`, a service of the group (it asks once before the ports open).
  private let reflection: UpstreamReflectionRefresh?
  private let logger: Logger

  /// Creates a gateway; nothing is bound until `run()`.
  /// - Parameters:
  ///   - configuration: Ports, pace and limits.
  ///   - logger: The root logger.
  ///   - shutdownSignals: Signals that start a graceful shutdown (the command passes SIGTERM and
  ///     SIGINT; tests pass none and call `beginGracefulShutdown()`).
  public init(
    configuration: GatewayConfiguration,
    logger: Logger,
    shutdownSignals: [UnixSignal] = []
  ) throws {
    self.configuration = configuration
    self.logger = logger
    self.metrics = GatewayMetrics()
    self.monitor = RPCMonitor(metrics: self.metrics, logger: logger)

    // One engine for every front end: the seed services as event-loop handlers, the upstreams
    // behind them, and one place for limits, auth and metrics, whichever transport a call came in
    // on.
    let (calls, services) = (configuration.calls, configuration.services)
    var methods = services.hostsSeed ? SeedMethods.make(services, logger: logger) : []
    if services.interopService {
      methods += InteropMethods.make(maximumMessageBytes: calls.maxMessageBytes)
    }
    // Health and reflection are the gateway's own, whatever it hosts, and report on everything it
    // serves: the catalog is filled in below, once the upstreams are known.
    let catalog = ServiceCatalog(.init(index: DescriptorIndex(), services: [], upstreams: [:]))
    self.catalog = catalog
    self.health = HealthState(catalog: catalog)
    methods += HealthMethods.make(self.health) + ReflectionMethods.make(catalog: catalog)
    // The JSON front ends translate with the hosted services' descriptors and those of
    // `--descriptor-set` (and, with `--upstream-reflection`, what the upstreams describe: see
    // `useDescriptors`), and call the same engine, on the connection's event loop.
    let registry = try Self.registry(services, extra: [])
    self.bridges = JSONBridgeSource(Self.bridge(registry, services, calls, logger: logger))
    var upstreams: UpstreamDirectory?
    if !configuration.upstream.routes.isEmpty {
      let directory = try UpstreamDirectory(
        routes: configuration.upstream.routes,
        tls: configuration.upstream.tls,
        registry: registry,
        hostedPaths: Set(methods.map(\.path)),
        maximumMessageBytes: calls.maxMessageBytes,
        logger: logger
      )
      directory.start(on: MultiThreadedEventLoopGroup.singleton.any())
      for cluster in directory.all {
        logger.info(
          "Proxying to an upstream",
          metadata: [
            "sluice.upstream.service": "\(cluster.route.service)",
            "sluice.upstream.addresses": "\(cluster.route.addresses.map(\.description).joined(separator: ","))",
            "sluice.upstream.json_methods": "\(directory.knownMethods(of: cluster).count)",
          ]
        )
      }
      upstreams = directory
    }
    let hostedServices = Set(methods.compactMap { UpstreamDirectory.service(of: $0.path) })
    self.catalog.replace(with: try Self.catalogContents(registry, hosted: hostedServices, upstreams: upstreams))
    let descriptorParts = DescriptorParts(
      services: services, calls: calls, bridges: self.bridges, upstreams: upstreams, catalog: self.catalog,
      hosted: hostedServices, health: self.health, logger: logger)
    self.descriptorParts = descriptorParts
    for cluster in upstreams?.all ?? [] {
      cluster.health.observe { [health] in health.changed() }
    }
    // --otlp-endpoint: swift-otel's tracer (not bootstrapped globally: the engine holds it) and
    // its exporter, which runs as a service of the group.
    var tracingService: (any Service)?
    var tracing: CallTracing?
    if let otlp = configuration.tracing {
      var otel = OTel.Configuration.default
      otel.serviceName = "sluice"
      otel.logs.enabled = false
      otel.metrics.enabled = false
      otel.traces.otlpExporter.endpoint = otlp.endpoint
      otel.traces.otlpExporter.protocol = otlp.grpc ? .grpc : .httpProtobuf
      // Sent five times a second, up to 4,096 at a time, 16,384 waiting at most (beyond that
      // spans are dropped, and swift-otel logs how many): room for about 20,000 calls a second.
      otel.traces.batchSpanProcessor.scheduleDelay = .milliseconds(200)
      otel.traces.batchSpanProcessor.maxExportBatchSize = 4096
      otel.traces.batchSpanProcessor.maxQueueSize = 16_384
      let backend = try OTel.makeTracingBackend(configuration: otel)
      tracing = CallTracing(tracer: backend.factory)
      tracingService = backend.service
    }
    let engine = RPCEngine(
      router: RPCRouter(methods, upstreams: upstreams),
      limiter: RPCLimiter(limit: calls.maxConcurrentRPCs),
      monitor: self.monitor,
      authenticator: configuration.auth.bearerTokens.map { BearerAuthenticator(tokens: $0) },
      forwardsBearer: configuration.auth.forwardBearer,
      maximumMessageBytes: calls.maxMessageBytes,
      budget: RequestByteBudget(limit: calls.maxBufferedRequestBytes),
      bodyTimeout: calls.bodyTimeout,
      echoMetadata: calls.echoMetadata,
      logger: logger,
      tracing: tracing
    )
    let router = ExchangeRouter(
      engine: engine,
      bridges: self.bridges,
      metrics: self.metrics,
      originPolicy: OriginPolicy(
        allowedOrigins: configuration.origins.allowed,
        allowedHosts: configuration.origins.hosts,
        usesTLS: configuration.listener.tls != nil
      )
    )
    self.grpcServer = GRPCPortServer(
      listener: configuration.listener, grpc: configuration.grpc, engine: engine, router: router,
      metrics: self.metrics, logger: logger)
    self.httpFrontEnd = HTTPFrontEnd(
      bridges: self.bridges,
      engine: engine,
      router: router,
      grpc: configuration.http.servesGRPC ? self.grpcServer : nil,
      listener: configuration.listener,
      http: configuration.http,
      calls: calls,
      webSocket: WebSocketSessionHandler.Settings(
        configuration.webSocket, auth: configuration.auth, origins: configuration.origins,
        maxMetadataBytes: configuration.http.maxHeaderBytes, secure: configuration.listener.tls != nil),
      metrics: self.metrics,
      logger: logger
    )

    var reflection: UpstreamReflectionRefresh?
    if configuration.upstream.reflection {
      reflection = UpstreamReflectionRefresh(
        routes: configuration.upstream.routes, tls: configuration.upstream.tls, logger: logger,
        apply: { try descriptorParts.use($0) })
    }
    self.reflection = reflection

    // Graceful shutdown runs in reverse order: the reflection refresh stops, health turns
    // NOT_SERVING, then the HTTP port drains, then the native port.
    // The span exporter is first, so it stops last and sends the spans of calls the drain ended.
    var groupConfiguration = ServiceGroupConfiguration(
      services: (tracingService.map { [.init(service: $0)] } ?? []) + [
        .init(service: self.grpcServer), .init(service: self.httpFrontEnd),
        .init(service: HealthShutdown(health: self.health, delay: configuration.shutdown.delay, logger: logger)),
      ] + (reflection.map { [.init(service: $0, successTerminationBehavior: .ignore)] } ?? []),
      gracefulShutdownSignals: shutdownSignals,
      logger: logger
    )
    let shutdown = configuration.shutdown
    groupConfiguration.maximumGracefulShutdownDuration = shutdown.delay + shutdown.drainTimeout
    self.serviceGroup = ServiceGroup(configuration: groupConfiguration)
  }

  /// Serves until a shutdown signal, `beginGracefulShutdown()` or cancellation, logging the
  /// addresses it bound once they are known.
  public func run() async throws {
    // Described before the ports open, so the first JSON call already has the descriptors.
    await self.reflection?.describeAll()
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await self.serviceGroup.run() }
      let port = try await self.grpcPort()
      self.logger.info(
        self.configuration.listener.tls == nil ? "Serving native gRPC (h2c)" : "Serving native gRPC (HTTP/2 over TLS)",
        metadata: ["sluice.grpc.address": "\(self.configuration.listener.host):\(port)"]
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

  /// Adds descriptors for the JSON front ends (upstream services described by reflection) to the
  /// hosted services' and `--descriptor-set`'s, replacing what an earlier call added. Calls in
  /// flight keep the descriptors they started with.
  public func useDescriptors(_ fileDescriptorSets: [[UInt8]]) throws {
    try self.descriptorParts.use(fileDescriptorSets)
  }

  /// What a change of descriptors updates: a value of its own, so that the reflection refresh
  /// (made before the gateway is whole) holds it rather than the gateway.
  private struct DescriptorParts: Sendable {
    let services: GatewayConfiguration.Services
    let calls: GatewayConfiguration.Calls
    let bridges: JSONBridgeSource
    let upstreams: UpstreamDirectory?
    let catalog: ServiceCatalog
    let hosted: Set<String>
    let health: HealthState
    let logger: Logger

    func use(_ fileDescriptorSets: [[UInt8]]) throws {
      let registry = try Gateway.registry(self.services, extra: fileDescriptorSets)
      self.bridges.replace(with: Gateway.bridge(registry, self.services, self.calls, logger: self.logger))
      self.upstreams?.update(registry: registry)
      self.catalog.replace(
        with: try Gateway.catalogContents(registry, hosted: self.hosted, upstreams: self.upstreams))
      self.health.changed()
    }
  }

  private static func registry(_ services: GatewayConfiguration.Services, extra: [[UInt8]]) throws
    -> DescriptorRegistry
  {
    try DescriptorRegistry(
      fileDescriptorSets: [SluiceDescriptors.fileDescriptorSet] + services.descriptorSets + extra)
  }

  /// What reflection and health report: the hosted services, and the upstream ones Sluice can name.
  private static func catalogContents(
    _ registry: DescriptorRegistry,
    hosted: Set<String>,
    upstreams: UpstreamDirectory?
  ) throws -> ServiceCatalog.Contents {
    let proxied = upstreams?.services(in: registry) ?? [:]
    return ServiceCatalog.Contents(
      index: try DescriptorIndex(registry),
      services: hosted.union(proxied.keys).sorted(),
      upstreams: proxied.filter { !hosted.contains($0.key) }
    )
  }

  /// The JSON bridge of `registry`, with its REST routes; the rules that cannot be served are
  /// logged (and left out).
  private static func bridge(
    _ registry: DescriptorRegistry,
    _ services: GatewayConfiguration.Services,
    _ calls: GatewayConfiguration.Calls,
    logger: Logger
  ) -> JSONBridge {
    let codec = JSONCodec(
      registry: registry,
      encoding: services.jsonOutput,
      decoding: .init(
        ignoreUnknownFields: services.jsonIgnoresUnknownFields, maximumDepth: calls.maxJSONDepth,
        maximumBytes: calls.maxMessageBytes))
    let bridge = JSONBridge(
      registry: registry, codec: codec, httpRules: services.httpRules,
      restIgnoresUnknownQuery: services.restIgnoresUnknownQuery)
    for problem in bridge.rest.problems {
      logger.error("REST route left out", metadata: ["problem": "\(problem.prefix(512))"])
    }
    if !bridge.rest.isEmpty {
      logger.info("REST routes from google.api.http", metadata: ["routes": "\(bridge.rest.routes.count)"])
    }
    return bridge
  }

  /// Starts a graceful shutdown: no new connections or RPCs; open streams end with `UNAVAILABLE`;
  /// `run()` returns once everything has stopped (or the drain timeout cancels what is left).
  public func beginGracefulShutdown() async {
    await self.serviceGroup.triggerGracefulShutdown()
  }
}

/// Turns the gateway's health NOT_SERVING as soon as a graceful shutdown starts, then keeps
/// serving for `--shutdown-delay`. The service group shuts its services down in reverse order, one
/// after the other, and this one is last in the list: every Watch has been told, and the delay has
/// passed, before the ports begin to drain.
private struct HealthShutdown: Service {
  let health: HealthState
  let delay: Duration
  let logger: Logger

  func run() async throws {
    try? await gracefulShutdown()
    self.health.beginShutdown()
    guard self.delay > .zero else { return }
    self.logger.notice(
      "Shutting down: health is NOT_SERVING; still serving until the shutdown delay has passed",
      metadata: ["sluice.shutdown_delay": "\(self.delay)"])
    // Cancelled (the drain timeout, a second signal's cancellation) ends the wait early.
    try? await Task.sleep(for: self.delay)
  }
}

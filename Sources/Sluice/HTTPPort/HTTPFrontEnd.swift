internal import Logging
internal import NIOCore
internal import NIOHTTP1
internal import NIOPosix
internal import NIOSSL
internal import NIOWebSocket
internal import ServiceLifecycle
internal import SluiceCodec

/// The HTTP/1.1 port: on every RPC path a WebSocket session or an HTTP JSON call, and `public/`.
///
/// Built on SwiftNIO's typed HTTP upgrade and NIOWebSocket's frame-level API rather than
/// hummingbird-websocket: PROTOCOL.md needs a client's Close to act as a half-close (the server
/// still sends the remaining responses and `$end` before replying Close), which needs control over
/// Close frames that the higher-level libraries take away.
final class HTTPFrontEnd: Service {
  /// The kernel's limit on unsent bytes per connection (`TCP_NOTSENT_LOWAT`). Without it Linux
  /// grows a socket's send buffer to `tcp_wmem`'s maximum (4 MiB here) even for a client that
  /// reads nothing: a stalled `List` reader then cost the gateway the CPU to fill 4 MiB of small
  /// frames and the kernel the memory to hold them, per session.
  static let unsentBytesLimit: SocketOptionValue = 16 * 1024

  private let listening: GatewayConfiguration.Listener
  private let webSocket: WebSocketSessionHandler.Settings
  private let logger: Logger
  private let boundPort = BoundPort()
  /// Every open connection, for a graceful shutdown.
  private let connections = ConnectionTracker()
  /// What the port's connections share (the engine, the JSON bridge, policies, budget, files).
  private let httpPort: HTTPPort
  /// The native port, when this port serves gRPC too (`--grpc-on-http-port`).
  private let grpc: GRPCPortServer?

  /// What a connection became; either way it is served from its pipeline, on its event loop.
  enum Upgrade: Sendable {
    /// A WebSocket session (`WebSocketSessionHandler`).
    case webSocket
    /// HTTP/1.1 requests (`HTTPConnectionHandler`).
    case http
    /// Native gRPC (`--grpc-on-http-port`), served by the gRPC port's HTTP/2 layer.
    case grpc
  }

  init(
    bridges: JSONBridgeSource,
    engine: RPCEngine,
    router: ExchangeRouter,
    grpc: GRPCPortServer?,
    listener: GatewayConfiguration.Listener,
    http: GatewayConfiguration.HTTPPort,
    calls: GatewayConfiguration.Calls,
    webSocket: WebSocketSessionHandler.Settings,
    metrics: GatewayMetrics,
    logger: Logger
  ) {
    self.grpc = grpc
    self.listening = listener
    self.webSocket = webSocket
    self.logger = logger
    self.httpPort = HTTPPort(
      engine: engine,
      router: router,
      bridges: bridges,
      http: http,
      calls: calls,
      secure: listener.tls != nil,
      originPolicy: router.originPolicy,
      staticFiles: http.servesPublicFiles
        ? http.publicDirectory.map { StaticFiles(root: $0) } ?? .embedded : nil,
      budget: engine.budget,
      metrics: metrics,
      logger: logger
    )
  }

  /// The bound port, once listening.
  func port() async throws -> Int {
    try await self.boundPort.value()
  }

  func run() async throws {
    do {
      try await self.serve()
    } catch {
      self.boundPort.resolve(.failure(error))  // no effect once bound
      throw error
    }
  }

  private func serve() async throws {
    let (http, calls) = (self.httpPort.http, self.httpPort.calls)
    let maxBytes = calls.maxMessageBytes
    let originPolicy = self.httpPort.originPolicy
    let counter = ConnectionCounter(limit: self.listening.maxConnections)
    let handshakeTimeout = TimeAmount(self.listening.handshakeTimeout)
    let sendTimeout = TimeAmount(http.sendTimeout)
    let maxHeaderBytes = http.maxHeaderBytes
    let (bodyTimeout, budget) = (calls.bodyTimeout, self.httpPort.budget)
    let (httpPort, tracker) = (self.httpPort, self.connections)
    let (engine, metrics, logger) = (httpPort.engine, httpPort.metrics, httpPort.logger)
    let webSocket = self.webSocket
    // NDJSON bodies of client-streaming and bidi calls are streams: their lines are timed one by
    // one (HTTPCall), not the body as a whole; the protocols of the `ExchangeRouter` time their
    // messages themselves.
    let streamsBody: @Sendable (HTTPRequestHead) -> Bool = { head in
      if httpPort.router.routes(HTTPExchangeRequest(method: head.method, uri: head.uri, headers: head.headers)) {
        return true
      }
      return head.method != .GET
        && httpPort.bridge.registry.method(path: head.path).map { !$0.takesOneRequest } == true
    }
    let grpc = self.grpc
    // HTTP/1.1 for browsers and curl (WebSocket needs it); with --grpc-on-http-port, HTTP/2 for
    // gRPC clients: ALPN picks in the server's order, so grpcio (`grpc-exp`, `h2`) gets `grpc-exp`,
    // grpc-go (`h2` only) `h2`, and clients that offer both `h2` and `http/1.1` get HTTP/1.1.
    let tlsContext = try self.listening.tls.map {
      try TLSServerContext.make($0, applicationProtocols: grpc == nil ? ["http/1.1"] : ["grpc-exp", "http/1.1", "h2"])
    }
    // An HTTP/1.1 connection: WebSocket upgrade, HTTP JSON calls, the page.
    let configureHTTP1: @Sendable (any Channel) throws -> EventLoopFuture<Upgrade> = { channel in
      let upgrader = NIOTypedWebSocketServerUpgrader<Upgrade>(
        maxFrameSize: maxBytes,
        enableAutomaticErrorHandling: false,
        shouldUpgrade: { channel, head in
          // The Origin, and a multiplexed handshake's credentials, were checked by OriginGuard, in
          // front of the upgrade handler.
          channel.eventLoop.makeSucceededFuture(
            WebSocketHandshake.responseHeaders(for: head.headers, path: head.path))
        },
        upgradePipelineHandler: { channel, head in
          channel.eventLoop.makeCompletedFuture {
            // From here on the bytes are WebSocket frames, not HTTP requests.
            let originGuard = try channel.pipeline.syncOperations.handler(type: OriginGuard.self)
            _ = channel.pipeline.syncOperations.removeHandler(originGuard)
            let bodyTimer = try channel.pipeline.syncOperations.handler(type: RequestBodyTimeout.self)
            _ = channel.pipeline.syncOperations.removeHandler(bodyTimer)
            let errorHandler = try channel.pipeline.syncOperations.handler(type: HTTPProtocolErrorHandler.self)
            _ = channel.pipeline.syncOperations.removeHandler(errorHandler)
            let messageGuard = WebSocketMessageGuard(bodyTimeout: bodyTimeout, budget: budget)
            try channel.pipeline.syncOperations.addHandler(
              messageGuard.bytes,
              position: .before(
                try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self))
            )
            try channel.pipeline.syncOperations.addHandler(WebSocketFrameValidator())
            try channel.pipeline.syncOperations.addHandler(messageGuard.frames)
            try channel.pipeline.syncOperations.addHandler(
              NIOWebSocketFrameAggregator(
                minNonFinalFragmentSize: 0,
                maxAccumulatedFrameCount: 1 << 16,
                maxAccumulatedFrameSize: maxBytes
              )
            )
            // The session keeps the descriptors it started with.
            let bridge = httpPort.bridge
            if head.path == WebSocketHandshake.muxPath,
              case .success(let setup) = MuxSessionHandler.setup(
                for: head, bridge: bridge, engine: engine, settings: webSocket)
            {
              try channel.pipeline.syncOperations.addHandler(
                MuxSessionHandler(
                  eventLoop: channel.eventLoop, engine: engine, setup: setup, settings: webSocket,
                  metrics: metrics, logger: logger)
              )
            } else {
              try channel.pipeline.syncOperations.addHandler(
                WebSocketSessionHandler(
                  eventLoop: channel.eventLoop,
                  engine: engine,
                  bridge: bridge,
                  path: head.path,
                  setup: WebSocketSessionHandler.setup(
                    for: head, bridge: bridge, engine: engine, settings: webSocket),
                  settings: webSocket,
                  metrics: metrics,
                  logger: logger
                )
              )
            }
            if tracker.isQuiescing {
              // Upgraded as the shutdown began: the session ends at once with UNAVAILABLE.
              channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            }
            return .webSocket
          }
        }
      )
      let configuration = NIOTypedHTTPServerUpgradeConfiguration<Upgrade>(
        upgraders: [upgrader],
        notUpgradingCompletionHandler: { channel in
          channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
              HTTPConnectionHandler(port: httpPort, eventLoop: channel.eventLoop, quiescing: tracker.isQuiescing)
            )
            return .http
          }
        }
      )
      var pipeline = NIOUpgradableHTTPServerPipelineConfiguration(upgradeConfiguration: configuration)
      // Reads go on while a response streams, so a client hanging up is noticed at once (NIO's
      // pipelining assistance would stop reading); `HTTPConnection` keeps a request that
      // arrives early for later.
      pipeline.enablePipelining = false
      pipeline.enableErrorHandling = false  // HTTPProtocolErrorHandler instead, with a Status body
      pipeline.decoderConfiguration.maxHeaderListSize = maxHeaderBytes
      pipeline.decoderConfiguration.maxHeaderFieldSize = maxHeaderBytes
      let upgraded = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
        configuration: pipeline
      )
      let upgradeHandler = try channel.pipeline.syncOperations.handler(
        type: NIOTypedHTTPServerUpgradeHandler<Upgrade>.self
      )
      try channel.pipeline.syncOperations.addHandler(
        HTTPProtocolErrorHandler(),
        position: .before(upgradeHandler)
      )
      try channel.pipeline.syncOperations.addHandler(
        OriginGuard(policy: originPolicy) { head in
          MuxSessionHandler.handshakeRefusal(head, bridge: httpPort.bridge, engine: engine, settings: webSocket)
        },
        position: .before(upgradeHandler)
      )
      try channel.pipeline.syncOperations.addHandler(
        HandshakeTimeout<HTTPServerRequestPart>(timeout: handshakeTimeout),
        position: .before(upgradeHandler)
      )
      // After the upgrade handler: it holds back the raw bytes that follow a handshake (a
      // client may send its first frames with it), which are no request parts.
      try channel.pipeline.syncOperations.addHandler(
        RequestBodyTimeout(bodyTimeout: bodyTimeout, streamsBody: streamsBody),
        position: .after(upgradeHandler)
      )
      return upgraded
    }
    let server = try await ServerBootstrap(group: .singletonMultiThreadedEventLoopGroup)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      // A client that stops reading holds at most this much unsent data in the kernel; past it the
      // socket is unwritable, so NIO's write buffer fills and the RPC's writes wait (see
      // `unsentBytesLimit`). Data in flight (sent, not yet acknowledged) does not count, so fast
      // clients on long paths are not slowed.
      .childChannelOption(.tcpOption(.tcp_notsent_lowat), value: Self.unsentBytesLimit)
      .childChannelOption(.writeBufferWaterMark, value: .init(low: 8 * 1024, high: 16 * 1024))
      .bind(host: self.listening.host, port: http.port) { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(SendTimeout(timeout: sendTimeout))
          if let tlsContext {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tlsContext))
          }
          guard counter.admit(channel) else {
            try channel.pipeline.syncOperations.addHandler(
              RefuseConnection(limit: counter.limit, timeout: handshakeTimeout))
            return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) as EventLoopFuture<Upgrade>
          }
          // Recorded until it closes, for a graceful shutdown (one that began already closes it).
          guard tracker.admit(channel) else {
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) as EventLoopFuture<Upgrade>
          }
          // Native gRPC too (--grpc-on-http-port): the first bytes tell.
          if let grpc {
            let upgrade = channel.eventLoop.makePromise(of: Upgrade.self)
            try channel.pipeline.syncOperations.addHandler(
              HTTPVersionSniffer(timeout: handshakeTimeout) { isHTTP2 in
                guard isHTTP2 else {
                  upgrade.completeWith(try configureHTTP1(channel))
                  return
                }
                // The HTTP port's socket settings are made for slow JSON readers; an HTTP/2
                // connection has flow control of its own and gets the native port's.
                try channel.syncOptions?.setOption(.writeBufferWaterMark, value: .init(low: 32 * 1024, high: 64 * 1024))
                try channel.syncOptions?.setOption(.tcpOption(.tcp_notsent_lowat), value: .max)
                try grpc.addHTTP2Connection(to: channel)
                upgrade.succeed(.grpc)
              }
            )
            return upgrade.futureResult
          }
          return try configureHTTP1(channel)
        }
      }

    let port = server.channel.localAddress?.port ?? http.port
    self.boundPort.resolve(.success(port))
    self.logger.info(
      "Serving WebSocket/JSON and HTTP JSON (HTTP/1.1)",
      metadata: ["sluice.http.address": "\(self.listening.host):\(port)"]
    )

    try await withTaskCancellationHandler {
      try await self.acceptConnections(server)
    } onCancel: {
      self.connections.closeAll()
    }
  }

  private func acceptConnections(
    _ server: NIOAsyncChannel<EventLoopFuture<Upgrade>, Never>
  ) async throws {
    try await withGracefulShutdownHandler {
      try await server.executeThenClose { connections in
        do {
          // Connections are served from their pipelines: no task each. Taking them from the
          // listener is what keeps it accepting.
          for try await _ in connections {}
        } catch  where Task.isShuttingDownGracefully {
          // The listener was closed to stop accepting.
        }
      }
      // Open sessions end with UNAVAILABLE, idle HTTP connections close, busy ones after their
      // response.
      try await self.connections.drained()
    } onGracefulShutdown: {
      server.channel.close(promise: nil)
      self.connections.quiesce()
    }
  }
}

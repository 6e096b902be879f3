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

  private let bridge: JSONBridge
  private let configuration: GatewayConfiguration
  private let originPolicy: OriginPolicy
  private let metrics: GatewayMetrics
  private let logger: Logger
  private let boundPort = BoundPort()
  private let budget: RequestByteBudget
  private let authenticator: BearerAuthenticator?

  enum Upgrade: Sendable {
    case webSocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, HTTPRequestHead)
    case http(NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>)
  }

  init(bridge: JSONBridge, configuration: GatewayConfiguration, metrics: GatewayMetrics, logger: Logger) {
    self.metrics = metrics
    self.bridge = bridge
    self.configuration = configuration
    self.originPolicy = OriginPolicy(
      allowedOrigins: configuration.allowedOrigins,
      allowedHosts: configuration.allowedHosts,
      usesTLS: configuration.tls != nil
    )
    self.logger = logger
    self.budget = RequestByteBudget(limit: configuration.maxBufferedRequestBytes)
    self.authenticator = configuration.bearerTokens.map { BearerAuthenticator(tokens: $0) }
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
    let maxBytes = self.configuration.maxMessageBytes
    let originPolicy = self.originPolicy
    let connections = ConnectionCounter(limit: self.configuration.maxConnections)
    let handshakeTimeout = TimeAmount(self.configuration.handshakeTimeout)
    let sendTimeout = TimeAmount(self.configuration.sendTimeout)
    let maxHeaderBytes = self.configuration.maxHeaderBytes
    let (bodyTimeout, budget) = (self.configuration.bodyTimeout, self.budget)
    let registry = self.bridge.registry
    // NDJSON bodies of client-streaming and bidi calls are streams: their lines are timed one by
    // one (HTTPCall), not the body as a whole.
    let streamsBody: @Sendable (HTTPRequestHead) -> Bool = { head in
      head.method != .GET && registry.method(path: head.path).map { !$0.takesOneRequest } == true
    }
    // HTTP/1.1 only: WebSocket needs it.
    let tlsContext = try self.configuration.tls.map {
      try TLSServerContext.make($0, applicationProtocols: ["http/1.1"])
    }
    let server = try await ServerBootstrap(group: .singletonMultiThreadedEventLoopGroup)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      // A client that stops reading holds at most this much unsent data in the kernel; past it the
      // socket is unwritable, so NIO's write buffer fills and the RPC's writes wait (see
      // `unsentBytesLimit`). Data in flight (sent, not yet acknowledged) does not count, so fast
      // clients on long paths are not slowed.
      .childChannelOption(.tcpOption(.tcp_notsent_lowat), value: Self.unsentBytesLimit)
      .childChannelOption(.writeBufferWaterMark, value: .init(low: 8 * 1024, high: 16 * 1024))
      .bind(host: self.configuration.host, port: self.configuration.httpPort) { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(SendTimeout(timeout: sendTimeout))
          if let tlsContext {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tlsContext))
          }
          guard connections.admit(channel) else {
            try channel.pipeline.syncOperations.addHandler(
              RefuseConnection(limit: connections.limit, timeout: handshakeTimeout))
            return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) as EventLoopFuture<Upgrade>
          }
          let upgrader = NIOTypedWebSocketServerUpgrader<Upgrade>(
            maxFrameSize: maxBytes,
            enableAutomaticErrorHandling: false,
            shouldUpgrade: { channel, head in
              // The Origin was checked by OriginGuard, in front of the upgrade handler.
              channel.eventLoop.makeSucceededFuture(WebSocketHandshake.responseHeaders(for: head.headers))
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
                return .webSocket(try NIOAsyncChannel(wrappingChannelSynchronously: channel), head)
              }
            }
          )
          let configuration = NIOTypedHTTPServerUpgradeConfiguration<Upgrade>(
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
              channel.eventLoop.makeCompletedFuture {
                .http(try NIOAsyncChannel(wrappingChannelSynchronously: channel))
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
            OriginGuard(policy: originPolicy),
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
      }

    let port = server.channel.localAddress?.port ?? self.configuration.httpPort
    self.boundPort.resolve(.success(port))
    self.logger.info(
      "Serving WebSocket/JSON and HTTP JSON (HTTP/1.1)",
      metadata: ["sluice.http.address": "\(self.configuration.host):\(port)"]
    )

    try await withGracefulShutdownHandler {
      try await withThrowingDiscardingTaskGroup { group in
        try await server.executeThenClose { connections in
          do {
            for try await upgrade in connections {
              group.addTask { await self.handle(upgrade) }
            }
          } catch  where Task.isShuttingDownGracefully {
            // The listener was closed to stop accepting: let the open sessions finish (they end
            // themselves with UNAVAILABLE) instead of cancelling them by throwing.
          }
        }
      }
    } onGracefulShutdown: {
      // Stop accepting; open sessions see the shutdown themselves and end with UNAVAILABLE.
      server.channel.close(promise: nil)
    }
  }

  /// Handles one connection; never throws into the accept loop.
  private func handle(_ upgrade: EventLoopFuture<Upgrade>) async {
    do {
      switch try await upgrade.get() {
      case .webSocket(let channel, let head):
        let session = WebSocketSession(
          bridge: self.bridge,
          path: head.path,
          handshake: head,
          configuration: self.configuration,
          metrics: self.metrics,
          logger: self.logger
        )
        self.metrics.connectionOpened(.websocket)
        defer { self.metrics.connectionClosed(.websocket) }
        await session.run(channel)
      case .http(let channel):
        let connection = HTTPConnection(
          bridge: self.bridge,
          configuration: self.configuration,
          originPolicy: self.originPolicy,
          staticFiles: self.configuration.publicDirectory.map { StaticFiles(root: $0) },
          budget: self.budget,
          authenticator: self.authenticator,
          metrics: self.metrics,
          logger: self.logger
        )
        try await connection.run(channel)
      }
    } catch {
      self.logger.debug("HTTP connection ended with an error", metadata: ["sluice.error": "\(error)"])
    }
  }
}

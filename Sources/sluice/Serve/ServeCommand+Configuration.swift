import Sluice

/// The mapping from the flags to the gateway's configuration: units (seconds and milliseconds to
/// durations, 0 to "never"), files read, and flags that stand for a setting's absence.
extension ServeCommand {
  func gatewayConfiguration() throws -> GatewayConfiguration {
    let (listen, limits, access, grpc, services, process) = (
      self.listen, self.limits, self.access, self.grpc, self.services, self.process
    )
    return GatewayConfiguration(
      host: listen.host,
      grpcPort: listen.grpcPort,
      httpPort: listen.httpPort,
      pace: .milliseconds(services.paceMs),
      listCount: services.listCount,
      drainTimeout: Self.duration(seconds: process.drainTimeout),
      shutdownDelay: Self.duration(seconds: process.shutdownDelay),
      maxMessageBytes: limits.maxMessageBytes,
      allowedOrigins: access.allowedOrigins,
      webSocketPingInterval: Self.duration(orNeverFromSeconds: access.wsPingInterval),
      publicDirectory: listen.publicDir?.isEmpty == false ? listen.publicDir : nil,
      servesPublicFiles: listen.publicDir?.isEmpty != true,
      grpcOnHTTPPort: listen.grpcOnHttpPort,
      bearerTokens: try access.bearerTokens(),
      bearerCookie: access.bearerCookie,
      maxJSONDepth: limits.maxJsonDepth,
      maxHeaderBytes: listen.maxHeaderBytes,
      maxConcurrentRPCs: limits.maxConcurrentRpcs,
      maxConnections: listen.maxConnections,
      handshakeTimeout: Self.duration(seconds: listen.handshakeTimeout),
      idleTimeout: Self.duration(seconds: listen.idleTimeout),
      sendTimeout: Self.duration(seconds: listen.sendTimeout),
      bodyTimeout: Self.duration(seconds: limits.bodyTimeout),
      maxBufferedRequestBytes: limits.maxBufferedRequestBytes,
      allowedHosts: access.allowedHosts,
      allowGetCalls: !access.noGetCalls,
      grpc: GatewayConfiguration.GRPCPort(
        maxConcurrentStreams: grpc.grpcMaxConcurrentStreams,
        maxConnectionIdle: Self.duration(orNeverFromSeconds: grpc.grpcMaxConnectionIdle),
        maxConnectionAge: Self.duration(orNeverFromSeconds: grpc.grpcMaxConnectionAge),
        maxConnectionAgeGrace: Self.duration(orNeverFromSeconds: grpc.grpcMaxConnectionAgeGrace),
        initialWindowSize: grpc.grpcInitialWindowSize,
        maxFrameSize: grpc.grpcMaxFrameSize,
        maxHeaderListSize: grpc.grpcMaxHeaderListSize
      ),
      echoMetadata: services.echoMetadata,
      forwardBearer: access.forwardBearer,
      interopService: services.interopService,
      tls: listen.tlsCert.map { .init(certificateChainPath: $0, privateKeyPath: listen.tlsKey ?? "") },
      hostsSeed: services.hosted == .seed,
      upstreams: try services.upstreamRoutes(),
      descriptorSets: try services.descriptorSets(),
      httpRules: try services.httpRules(),
      upstreamTLS: services.upstreamTls
        ? UpstreamTLS(caPath: services.upstreamCa, serverName: services.upstreamServerName) : nil,
      upstreamReflection: services.upstreamReflection,
      otlpTraces: process.otlpEndpoint.map { .init(endpoint: $0, grpc: process.otlpProtocol == .grpc) }
    )
  }

  /// Seconds from a flag (already checked to be finite and at most `FlagRange.secondsLimit`) as a
  /// duration.
  static func duration(seconds: Double) -> Duration {
    .milliseconds(Int64((seconds * 1000).rounded()))
  }

  /// The same for a flag where 0 stands for "never" (nil).
  static func duration(orNeverFromSeconds seconds: Double) -> Duration? {
    seconds > 0 ? Self.duration(seconds: seconds) : nil
  }
}

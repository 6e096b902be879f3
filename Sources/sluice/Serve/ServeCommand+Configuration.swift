import Sluice

/// The mapping from the flags to the gateway's configuration: units (seconds and milliseconds to
/// durations, 0 to "never"), files read, and flags that stand for a setting's absence.
extension ServeCommand {
  func gatewayConfiguration() throws -> GatewayConfiguration {
    let (listen, limits, access, grpc, services, process) = (
      self.listen, self.limits, self.access, self.grpc, self.services, self.process
    )
    return GatewayConfiguration(
      listener: .init(
        host: listen.host,
        tls: listen.tlsCert.map { .init(certificateChainPath: $0, privateKeyPath: listen.tlsKey ?? "") },
        maxConnections: listen.maxConnections,
        handshakeTimeout: Self.duration(seconds: listen.handshakeTimeout)
      ),
      calls: .init(
        maxConcurrentRPCs: limits.maxConcurrentRpcs,
        maxMessageBytes: limits.maxMessageBytes,
        maxBufferedRequestBytes: limits.maxBufferedRequestBytes,
        bodyTimeout: Self.duration(seconds: limits.bodyTimeout),
        maxJSONDepth: limits.maxJsonDepth,
        echoMetadata: services.echoMetadata
      ),
      auth: .init(
        bearerTokens: try access.bearerTokens(),
        forwardBearer: access.forwardBearer,
        bearerCookie: access.bearerCookie
      ),
      origins: .init(allowed: access.allowedOrigins, hosts: access.allowedHosts),
      grpc: .init(
        port: listen.grpcPort,
        maxConcurrentStreams: grpc.grpcMaxConcurrentStreams,
        maxConnectionIdle: Self.duration(orNeverFromSeconds: grpc.grpcMaxConnectionIdle),
        maxConnectionAge: Self.duration(orNeverFromSeconds: grpc.grpcMaxConnectionAge),
        maxConnectionAgeGrace: Self.duration(orNeverFromSeconds: grpc.grpcMaxConnectionAgeGrace),
        initialWindowSize: grpc.grpcInitialWindowSize,
        maxFrameSize: grpc.grpcMaxFrameSize,
        maxHeaderListSize: grpc.grpcMaxHeaderListSize
      ),
      http: .init(
        port: listen.httpPort,
        servesGRPC: listen.grpcOnHttpPort,
        maxHeaderBytes: listen.maxHeaderBytes,
        idleTimeout: Self.duration(seconds: listen.idleTimeout),
        sendTimeout: Self.duration(seconds: listen.sendTimeout),
        allowGetCalls: !access.noGetCalls,
        servesPublicFiles: listen.publicDir?.isEmpty != true,
        publicDirectory: listen.publicDir?.isEmpty == false ? listen.publicDir : nil
      ),
      webSocket: .init(
        pingInterval: Self.duration(orNeverFromSeconds: access.wsPingInterval),
        maxStreamsPerSession: limits.maxStreamsPerSession
      ),
      services: .init(
        hostsSeed: services.hosted == .seed,
        pace: .milliseconds(services.paceMs),
        listCount: services.listCount,
        interopService: services.interopService,
        descriptorSets: try services.descriptorSets(),
        httpRules: try services.httpRules(),
        jsonOutput: try services.jsonOutputOptions(),
        jsonIgnoresUnknownFields: services.jsonIgnoreUnknownFields,
        restIgnoresUnknownQuery: services.restIgnoreUnknownQuery
      ),
      upstream: .init(
        routes: try services.upstreamRoutes(),
        tls: services.upstreamTls
          ? UpstreamTLS(caPath: services.upstreamCa, serverName: services.upstreamServerName) : nil,
        reflection: services.upstreamReflection
      ),
      shutdown: .init(
        delay: Self.duration(seconds: process.shutdownDelay),
        drainTimeout: Self.duration(seconds: process.drainTimeout)
      ),
      tracing: process.otlpEndpoint.map { .init(endpoint: $0, grpc: process.otlpProtocol == .grpc) }
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

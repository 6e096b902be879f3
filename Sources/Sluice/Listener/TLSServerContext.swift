internal import NIOSSL

/// The one TLS server configuration of both ports (`--tls-cert`, `--tls-key`): TLS 1.2 or 1.3,
/// and under TLS 1.2 only forward-secret AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305).
/// TLS 1.3's suites are all of that kind. Static-RSA, CBC and SHA-1 suites are refused.
enum TLSServerContext {
  /// The TLS 1.2 cipher suites offered, strongest first.
  static let cipherSuites: [NIOTLSCipher] = [
    .TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    .TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    .TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    .TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    .TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
  ]

  /// A server context for `files`, negotiating one of `applicationProtocols` by ALPN.
  static func make(
    _ files: GatewayConfiguration.TLSFiles,
    applicationProtocols: [String]
  ) throws -> NIOSSLContext {
    var configuration = TLSConfiguration.makeServerConfiguration(
      certificateChain: try NIOSSLCertificate.fromPEMFile(files.certificateChainPath).map { .certificate($0) },
      privateKey: .privateKey(try NIOSSLPrivateKey(file: files.privateKeyPath, format: .pem))
    )
    configuration.minimumTLSVersion = .tlsv12
    configuration.cipherSuiteValues = Self.cipherSuites
    configuration.applicationProtocols = applicationProtocols
    return try NIOSSLContext(configuration: configuration)
  }
}

public import GRPCCore

/// A debugging aid (`sluice --echo-metadata`): every RPC's response headers repeat the request
/// metadata that reached the service, as `echo-<key>`. It shows what a browser, curl or websocat
/// call really carries after the front end's translation. Credentials (`authorization`,
/// `proxy-authorization`, `cookie`) are never echoed.
public struct MetadataEcho: ServerInterceptor {
  private static let credentials: Set<String> = ["authorization", "proxy-authorization", "cookie"]

  /// Whether a request metadata key is echoed: not a pseudo-header, not gRPC's own, not a
  /// credential, not the gateway's bookkeeping.
  static func echoes(_ key: String) -> Bool {
    !key.hasPrefix(":") && !key.hasPrefix("grpc-") && !Self.credentials.contains(key)
      && !key.hasPrefix(MetadataKeys.gatewayPrefix)
  }

  /// Creates the interceptor.
  public init() {}

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    var response = try await next(request, context)
    if case .success(var contents) = response.accepted {
      for (key, value) in request.metadata where Self.echoes(key) {
        switch value {
        case .string(let string): contents.metadata.addString(string, forKey: "echo-\(key)")
        case .binary(let bytes): contents.metadata.addBinary(bytes, forKey: "echo-\(key)")
        }
      }
      response.accepted = .success(contents)
    }
    return response
  }
}

internal import Logging
internal import NIOConcurrencyHelpers
internal import NIOCore
internal import SluiceCodec

/// Which upstream serves which path: `--upstream SERVICE=…` by service name, `--upstream '*'=…`
/// for every service Sluice does not host. Methods with descriptors (`--descriptor-set`) are
/// known with their kind; any other path of an upstream service is passed through as a
/// bidirectional stream (the native port needs no descriptors to proxy).
final class UpstreamDirectory: Sendable {
  private let clusters: [String: UpstreamCluster]
  private let wildcard: UpstreamCluster?
  private let hostedServices: Set<String>
  private let hostedPaths: Set<String>
  /// The methods with descriptors, by path (replaced by `update`).
  private let known: NIOLockedValueBox<[String: RPCMethod]>
  private let maximumMessageBytes: Int

  /// Every cluster, once.
  let all: [UpstreamCluster]

  init(
    routes: [UpstreamRoute],
    tls: UpstreamTLS?,
    registry: DescriptorRegistry,
    hostedPaths: Set<String>,
    maximumMessageBytes: Int,
    logger: Logger
  ) throws {
    var clusters: [String: UpstreamCluster] = [:]
    var all: [UpstreamCluster] = []
    for route in routes {
      guard clusters[route.service] == nil else {
        throw UpstreamConfigurationError("--upstream \(route.service) is given twice: list every address in one flag")
      }
      let cluster = try UpstreamCluster(route: route, tls: tls, logger: logger)
      clusters[route.service] = cluster
      all.append(cluster)
    }
    self.wildcard = clusters.removeValue(forKey: "*")
    self.clusters = clusters
    self.all = all
    self.hostedServices = Set(hostedPaths.map { Self.service(of: $0) ?? "" })
    self.maximumMessageBytes = maximumMessageBytes
    self.known = NIOLockedValueBox([:])
    self.hostedPaths = hostedPaths
    self.update(registry: registry)
  }

  /// Takes the methods of upstream services from `registry` (with their kinds).
  func update(registry: DescriptorRegistry) {
    var known: [String: RPCMethod] = [:]
    for method in registry.methods where !self.hostedPaths.contains(method.path) {
      guard let cluster = self.cluster(for: method.serviceName) else { continue }
      let kind: RPCMethod.Kind =
        switch method.kind {
        case .unary: .unary
        case .serverStreaming: .serverStreaming
        case .clientStreaming: .clientStreaming
        case .bidirectionalStreaming: .bidirectionalStreaming
        }
      known[method.path] = Self.method(path: method.path, kind: kind, cluster: cluster, limit: self.maximumMessageBytes)
    }
    self.known.withLockedValue { $0 = known }
  }

  /// The cluster serving `service`, or nil when it is hosted or no upstream serves it.
  private func cluster(for service: String) -> UpstreamCluster? {
    guard !self.hostedServices.contains(service) else { return self.clusters[service] }
    return self.clusters[service] ?? self.wildcard
  }

  /// The upstream services Sluice can name, with the cluster serving each: every `--upstream
  /// SERVICE=`, and every service of `registry` that an upstream serves (by `*`).
  func services(in registry: DescriptorRegistry) -> [String: UpstreamCluster] {
    var services = self.clusters
    for method in registry.methods where services[method.serviceName] == nil {
      if let cluster = self.cluster(for: method.serviceName) { services[method.serviceName] = cluster }
    }
    return services
  }

  /// The paths with descriptors that `cluster` serves.
  func knownMethods(of cluster: UpstreamCluster) -> [String] {
    let paths = self.known.withLockedValue { Array($0.keys) }
    return paths.filter { path in Self.service(of: path).flatMap { self.cluster(for: $0) } === cluster }.sorted()
  }

  /// The upstream method at `path`, or nil when no upstream serves its service.
  func method(path: String) -> RPCMethod? {
    if let method = self.known.withLockedValue({ $0[path] }) { return method }
    guard let service = Self.service(of: path), let cluster = self.cluster(for: service) else { return nil }
    return Self.method(
      path: path, kind: .bidirectionalStreaming, cluster: cluster, limit: self.maximumMessageBytes, declared: false)
  }

  /// Starts every cluster's timers (name resolution, health checks) on `loop`.
  func start(on loop: any EventLoop) {
    for cluster in self.all { cluster.start(on: loop) }
  }

  private static func method(
    path: String, kind: RPCMethod.Kind, cluster: UpstreamCluster, limit: Int, declared: Bool = true
  ) -> RPCMethod {
    RPCMethod(path: path, kind: kind, declared: declared) {
      UpstreamHandler(cluster: cluster, path: path, maximumMessageBytes: limit)
    }
  }

  /// `pkg.Service` of `/pkg.Service/Method`; nil for a path of another shape.
  static func service(of path: String) -> String? {
    let parts = path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
    guard parts.count == 3, parts[0].isEmpty, !parts[1].isEmpty, !parts[2].isEmpty else { return nil }
    return String(Substring(parts[1]))
  }
}

internal import GRPCCore
internal import Logging
internal import NIOConcurrencyHelpers
internal import NIOCore
internal import NIOPosix
internal import NIOSSL

#if canImport(Glibc)
  internal import Glibc
#endif

/// The servers behind one `--upstream`: their addresses (host names resolved to every address
/// they have, again every `resolveInterval`) and, on each event loop, one HTTP/2 connection per
/// address, made when a call first needs it on that loop. Calls go round-robin over the addresses
/// that are not ejected; an address whose connection fails or breaks is ejected for a backoff
/// (1 s, doubling up to 30 s), and a call that could not connect tries the next address.
final class UpstreamCluster: Sendable {
  /// How often host names are resolved again.
  static let resolveInterval = TimeAmount.seconds(30)
  /// How long a connection attempt may take.
  static let connectTimeout = TimeAmount.seconds(5)

  let route: UpstreamRoute
  /// The `:authority` of upstream requests: the first address as configured.
  let authority: String
  /// Whether upstream connections are TLS.
  var secure: Bool { self.tls != nil }
  private let tls: NIOSSLContext?
  private let serverName: String?
  private let logger: Logger
  /// The resolved addresses, in a stable order (all of every host's).
  private let resolved: NIOLockedValueBox<[Target]>
  /// Each event loop's connections, touched only on that loop (see `LoopPool`).
  private let pools: NIOLockedValueBox<[ObjectIdentifier: LoopPool]>

  /// Response header fields HTTP does not allow are kept (`sluice call` only; see
  /// `UpstreamConnection`).
  let keepsInvalidFields: Bool

  init(route: UpstreamRoute, tls: UpstreamTLS?, logger: Logger, keepsInvalidFields: Bool = false) throws {
    self.route = route
    self.keepsInvalidFields = keepsInvalidFields
    self.authority = route.addresses.first.map { "\($0)" } ?? "localhost"
    self.logger = logger
    if let tls {
      var configuration = TLSConfiguration.makeClientConfiguration()
      configuration.applicationProtocols = ["h2"]
      if let ca = tls.caPath {
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
      }
      self.tls = try NIOSSLContext(configuration: configuration)
      self.serverName = tls.serverName
    } else {
      self.tls = nil
      self.serverName = nil
    }
    self.resolved = NIOLockedValueBox(Self.resolve(route.addresses, logger: logger))
    self.pools = NIOLockedValueBox([:])
  }

  /// What the active health checks found.
  let health = UpstreamHealth()

  /// The addresses as last resolved.
  var targets: [Target] { self.resolved.withLockedValue { $0 } }

  /// Whether some address of the cluster was reached and is serving at the last health check
  /// (before the first, every address counts as serving): the health the gateway reports for the
  /// services it proxies here.
  var isServing: Bool {
    self.targets.contains { self.health.isAvailable($0.address) }
  }

  /// Starts the timers: host names resolved again every `resolveInterval` (on NIO's blocking-I/O
  /// pool) and the active health checks, on `loop`.
  func start(on loop: any EventLoop) {
    UpstreamHealthCheck(cluster: self, loop: loop).start()
    guard self.route.addresses.contains(where: { (try? SocketAddress(ipAddress: $0.host, port: $0.port)) == nil })
    else { return }
    loop.scheduleRepeatedTask(initialDelay: Self.resolveInterval, delay: Self.resolveInterval) { _ in
      NIOThreadPool.singleton.submit { state in
        guard state == .active else { return }
        let addresses = Self.resolve(self.route.addresses, logger: self.logger)
        // A name that failed to resolve keeps what it had: a DNS hiccup is not an outage.
        if !addresses.isEmpty { self.resolved.withLockedValue { $0 = addresses } }
      }
    }
  }

  /// An address to connect to, and the host name it came from (TLS's SNI and verification),
  /// nil for an IP literal.
  struct Target: Sendable {
    var address: SocketAddress
    var name: String?
  }

  /// Every address of every host, each once, in order.
  static func resolve(_ addresses: [UpstreamAddress], logger: Logger) -> [Target] {
    var result: [Target] = []
    for address in addresses {
      if let literal = try? SocketAddress(ipAddress: address.host, port: address.port) {
        result.append(Target(address: literal, name: nil))
        continue
      }
      let found = Self.lookUp(address.host, port: address.port)
      if found.isEmpty {
        logger.warning("An upstream host name does not resolve", metadata: ["sluice.upstream": "\(address)"])
      }
      for candidate in found where !result.contains(where: { $0.address == candidate }) {
        result.append(Target(address: candidate, name: address.host))
      }
    }
    return result
  }

  /// getaddrinfo's every TCP address for a host (NIO's resolver picks one for a connection, and
  /// has no API that returns them all).
  private static func lookUp(_ host: String, port: Int) -> [SocketAddress] {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var list: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return [] }
    defer { freeaddrinfo(first) }
    var found: [SocketAddress] = []
    var entry: UnsafeMutablePointer<addrinfo>? = first
    while let current = entry {
      if let raw = current.pointee.ai_addr {
        switch Int32(current.pointee.ai_family) {
        case AF_INET:
          let address = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
          found.append(SocketAddress(address, host: host))
        case AF_INET6:
          let address = raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
          found.append(SocketAddress(address, host: host))
        default:
          break
        }
      }
      entry = current.pointee.ai_next
    }
    return found
  }

  /// Finds (or makes) a connection for a call on `loop` and calls `body` with it, on `loop`; or
  /// with `UNAVAILABLE` naming the upstream when no address could be reached.
  func connection(on loop: any EventLoop, _ body: @escaping (Result<UpstreamConnection, RPCError>) -> Void) {
    self.pool(on: loop).connection(addresses: self.resolved.withLockedValue { $0 }, body)
  }

  private func pool(on loop: any EventLoop) -> LoopPool {
    let key = ObjectIdentifier(loop)
    return self.pools.withLockedValue { pools in
      if let pool = pools[key] { return pool }
      let pool = LoopPool(loop: loop, cluster: self)
      pools[key] = pool
      return pool
    }
  }

  /// Closes every connection the cluster has made (a cluster used once, for reflection).
  func closeConnections() {
    for pool in self.pools.withLockedValue({ Array($0.values) }) {
      // The pool refers to its cluster unowned: keep the cluster until its connections are closed.
      pool.loop.execute { withExtendedLifetime(self) { pool.closeAll() } }
    }
  }

  /// Like `connection(on:_:)`, to one address.
  func connection(
    on loop: any EventLoop,
    to target: Target,
    _ body: @escaping (Result<UpstreamConnection, RPCError>) -> Void
  ) {
    self.pool(on: loop).connection(addresses: [target], body)
  }

  /// Opens a connection to `target` on `loop`.
  fileprivate func connect(
    to target: Target,
    on loop: any EventLoop,
    handler: UpstreamConnection
  ) -> EventLoopFuture<any Channel> {
    let tls = self.tls
    let hostName = self.serverName ?? target.name
    // Made on the loop and added on it (the initializer runs there).
    let handler = NIOLoopBound(handler, eventLoop: loop)
    return ClientBootstrap(group: loop)
      .connectTimeout(Self.connectTimeout)
      .channelOption(.tcpOption(.tcp_nodelay), value: 1)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          if let tls {
            let sni = hostName.flatMap { (try? SocketAddress(ipAddress: $0, port: 0)) == nil ? $0 : nil }
            try channel.pipeline.syncOperations.addHandler(
              try NIOSSLClientHandler(context: tls, serverHostname: sni))
          }
          try channel.pipeline.syncOperations.addHandler(handler.value)
        }
      }
      .connect(to: target.address)
  }

  var log: Logger { self.logger }
}

/// One event loop's connections to a cluster's addresses. Touched only on its loop, which is why
/// it is `@unchecked Sendable`: the cluster's dictionary hands it out under a lock, and every
/// method asserts the loop.
private final class LoopPool: @unchecked Sendable {
  /// An address's state on this loop.
  private struct Slot {
    var connection: UpstreamConnection?
    var connecting = false
    var waiters: [(Result<UpstreamConnection, RPCError>) -> Void] = []
    var failures = 0
    var ejectedUntil: NIODeadline?
    var lastError: String?
  }

  let loop: any EventLoop
  private unowned let cluster: UpstreamCluster
  private var slots: [SocketAddress: Slot] = [:]
  private var next = 0

  init(loop: any EventLoop, cluster: UpstreamCluster) {
    self.loop = loop
    self.cluster = cluster
  }

  func connection(
    addresses: [UpstreamCluster.Target],
    tried: Set<SocketAddress> = [],
    _ body: @escaping (Result<UpstreamConnection, RPCError>) -> Void
  ) {
    self.loop.preconditionInEventLoop()
    // Before any retry every address is a candidate: no filtered copy for each call.
    let candidates = tried.isEmpty ? addresses : addresses.filter { !tried.contains($0.address) }
    guard !candidates.isEmpty else {
      let detail = tried.compactMap { self.slots[$0]?.lastError }.first ?? "it has no address"
      body(.failure(self.unavailable(detail)))
      return
    }
    // Round-robin over the addresses not ejected and not found NOT_SERVING; when every one is
    // out, the one back soonest.
    let now = NIODeadline.now()
    var chosen: UpstreamCluster.Target?
    for offset in 0..<candidates.count {
      let target = candidates[(self.next + offset) % candidates.count]
      if let until = self.slots[target.address]?.ejectedUntil, until > now { continue }
      if candidates.count > 1, !self.cluster.health.isServing(target.address) { continue }
      chosen = target
      self.next = (self.next + offset + 1) % max(candidates.count, 1)
      break
    }
    let target =
      chosen
      ?? candidates.min {
        (self.slots[$0.address]?.ejectedUntil ?? now) < (self.slots[$1.address]?.ejectedUntil ?? now)
      } ?? candidates[0]
    let address = target.address
    var slot = self.slots[address] ?? Slot()
    if let connection = slot.connection, connection.isUsable {
      body(.success(connection))
      return
    }
    let retry: (Result<UpstreamConnection, RPCError>) -> Void = { result in
      switch result {
      case .success: body(result)
      case .failure: self.connection(addresses: addresses, tried: tried.union([address]), body)
      }
    }
    slot.waiters.append(retry)
    let start = !slot.connecting
    slot.connecting = true
    self.slots[address] = slot
    if start { self.connect(target) }
  }

  /// Closes this loop's connections.
  func closeAll() {
    for slot in self.slots.values { slot.connection?.close() }
  }

  private func connect(_ target: UpstreamCluster.Target) {
    let address = target.address
    let name = "\(address)"
    let connection = UpstreamConnection(
      address: name, eventLoop: self.loop, logger: self.cluster.log, keepsInvalidFields: self.cluster.keepsInvalidFields
    )
    connection.onReady = {
      self.settle(address) { slot in
        slot.connection = connection
        slot.failures = 0
        slot.ejectedUntil = nil
        return .success(connection)
      }
    }
    connection.onGone = { error in
      self.loop.preconditionInEventLoop()
      guard var slot = self.slots[address] else { return }
      if slot.connection === connection { slot.connection = nil }
      if let error, !slot.connecting {
        // A connection that broke (not a GOAWAY) ejects its address for a while.
        self.eject(&slot, error)
      }
      self.slots[address] = slot
    }
    self.cluster.connect(to: target, on: self.loop, handler: connection).assumeIsolated().whenFailure { error in
      self.settle(address) { slot in
        let detail = "could not connect to \(address): \(Self.describe(error))"
        self.eject(&slot, detail)
        self.cluster.log.debug(
          "Upstream connection failed", metadata: ["sluice.upstream": "\(address)", "sluice.error": "\(error)"])
        return .failure(self.unavailable(detail))
      }
    }
  }

  /// Ends an address's connection attempt with what `decide` makes of its slot, and tells the
  /// calls that waited for it.
  private func settle(
    _ address: SocketAddress,
    _ decide: (inout Slot) -> Result<UpstreamConnection, RPCError>
  ) {
    guard var slot = self.slots[address], slot.connecting else { return }
    slot.connecting = false
    let result = decide(&slot)
    let waiters = slot.waiters
    slot.waiters = []
    self.slots[address] = slot
    for waiter in waiters { waiter(result) }
  }

  private func eject(_ slot: inout Slot, _ error: String) {
    slot.failures += 1
    let seconds = min(Int64(1) << Int64(min(slot.failures - 1, 5)), 30)
    slot.ejectedUntil = .now() + .seconds(seconds)
    slot.lastError = error
  }

  private func unavailable(_ detail: String) -> RPCError {
    GRPCErrors.upstreamUnavailable(self.cluster.route.service, detail)
  }

  private static func describe(_ error: any Error) -> String {
    if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
      return "\(first.error)"
    }
    return "\(error)"
  }
}

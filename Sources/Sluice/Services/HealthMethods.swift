internal import GRPCCore
internal import NIOConcurrencyHelpers
internal import NIOCore
internal import NIOHPACK
internal import SluiceProtos
internal import SwiftProtobuf

/// `grpc.health.v1.Health` (Check, Watch, List) for the gateway and every service in the
/// `ServiceCatalog`: the empty name is the gateway itself, SERVING while it runs; a hosted service
/// is SERVING too; a proxied one is SERVING while its upstream has an address that can be reached
/// and does not answer NOT_SERVING (`UpstreamCluster.isServing`). From the moment a graceful
/// shutdown starts every one is NOT_SERVING, so a load balancer stops sending before the drain
/// ends. Check and Watch answer without `--require-bearer`'s token (probes carry none); List, which
/// names every service, needs it. Written here, not taken from grpc-swift-extras (not available to this build), because it
/// runs on the engine's event loops and reports the gateway's own state.
final class HealthState: Sendable {
  typealias Status = Grpc_Health_V1_HealthCheckResponse.ServingStatus
  static let service = "grpc.health.v1.Health"

  /// A Watch call, told on its own event loop that a status may have changed.
  private struct Watcher: Sendable {
    let loop: any EventLoop
    let changed: @Sendable () -> Void
  }

  private struct State {
    var shuttingDown = false
    var watchers: [ObjectIdentifier: Watcher] = [:]
  }

  private let catalog: ServiceCatalog
  private let state = NIOLockedValueBox(State())

  init(catalog: ServiceCatalog) {
    self.catalog = catalog
  }

  /// The status of `service` (the empty name: the gateway), or nil when the gateway does not serve it.
  func status(of service: String) -> Status? {
    self.status(of: service, in: self.catalog.current)
  }

  private func status(of service: String, in contents: ServiceCatalog.Contents) -> Status? {
    let known = service.isEmpty || contents.upstreams[service] != nil || contents.services.contains(service)
    guard known else { return nil }
    if self.state.withLockedValue({ $0.shuttingDown }) { return .notServing }
    guard let upstream = contents.upstreams[service] else { return .serving }
    return upstream.isServing ? .serving : .notServing
  }

  /// The status of the gateway (the empty name) and of every service it serves.
  func statuses() -> [String: Status] {
    let contents = self.catalog.current
    var all: [String: Status] = [:]
    for service in [""] + contents.services { all[service] = self.status(of: service, in: contents) }
    return all
  }

  /// A graceful shutdown started: everything is NOT_SERVING from now on.
  func beginShutdown() {
    self.state.withLockedValue { $0.shuttingDown = true }
    self.changed()
  }

  /// Tells every Watch call to look again (an upstream's health or the catalog changed).
  func changed() {
    for watcher in self.state.withLockedValue({ Array($0.watchers.values) }) {
      watcher.loop.execute(watcher.changed)
    }
  }

  fileprivate func watch(_ id: ObjectIdentifier, on loop: any EventLoop, _ changed: @escaping @Sendable () -> Void) {
    self.state.withLockedValue { $0.watchers[id] = Watcher(loop: loop, changed: changed) }
  }

  fileprivate func unwatch(_ id: ObjectIdentifier) {
    self.state.withLockedValue { _ = $0.watchers.removeValue(forKey: id) }
  }
}

enum HealthMethods {
  static func make(_ health: HealthState) -> [RPCMethod] {
    [
      .unary("/grpc.health.v1.Health/Check", authenticates: false) {
        (request: Grpc_Health_V1_HealthCheckRequest, _) throws(RPCError) -> Grpc_Health_V1_HealthCheckResponse in
        guard let status = health.status(of: request.service) else {
          throw GRPCErrors.unknownHealthService(request.service)
        }
        return .with { $0.status = status }
      },
      // List names every service: behind the token, unlike the probes.
      .unary("/grpc.health.v1.Health/List") {
        (_: Grpc_Health_V1_HealthListRequest, _) -> Grpc_Health_V1_HealthListResponse in
        .with { $0.statuses = health.statuses().mapValues { status in .with { $0.status = status } } }
      },
      RPCMethod(path: "/grpc.health.v1.Health/Watch", kind: .serverStreaming, authenticates: false) {
        WatchHandler(health: health)
      },
    ]
  }
}

/// `Watch`: the service's status at once (SERVICE_UNKNOWN when the gateway does not serve it; the
/// call stays open), then each change, until the client leaves or the gateway stops.
private final class WatchHandler: RPCHandler {
  private let health: HealthState
  private var call: ServerCall?
  private var service: String?
  private var last: HealthState.Status?

  init(health: HealthState) {
    self.health = health
  }

  func start(_ call: ServerCall) -> HPACKHeaders? {
    self.call = call
    return [:]
  }

  func received(_ message: ByteBuffer, _ call: ServerCall) {
    guard self.service == nil else {
      // The handler ends the call itself, so `stopped` will not run: stop watching here.
      self.stopped()
      call.finish(GRPCErrors.expectedOneMessage(got: 2))
      return
    }
    guard let request = call.decode(Grpc_Health_V1_HealthCheckRequest.self, from: message) else { return }
    self.service = request.service
    let bound = NIOLoopBound(self, eventLoop: call.eventLoop)
    self.health.watch(ObjectIdentifier(self), on: call.eventLoop) { bound.value.refresh() }
    self.refresh()
  }

  func receivedEnd(_ call: ServerCall) {
    if self.service == nil { call.finish(GRPCErrors.expectedOneMessage(got: 0)) }
  }

  /// The call ended without the handler, or the handler is about to end it: the watcher goes,
  /// and with it the state's hold on this handler.
  func stopped() {
    self.health.unwatch(ObjectIdentifier(self))
    self.call = nil
  }

  /// Sends the service's status when it is not the last one sent.
  private func refresh() {
    guard let call = self.call, let service = self.service else { return }
    let status = self.health.status(of: service) ?? .serviceUnknown
    guard status != self.last else { return }
    self.last = status
    call.send(Grpc_Health_V1_HealthCheckResponse.with { $0.status = status })
  }
}

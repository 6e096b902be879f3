internal import GRPCCore
internal import Logging
internal import NIOConcurrencyHelpers
internal import NIOCore
internal import NIOHPACK
internal import SluiceProtos
internal import SwiftProtobuf

/// Active health checks of a cluster's addresses with `grpc.health.v1.Health/Check`, every
/// `interval`, on one event loop: an address whose upstream answers anything but SERVING for the
/// route's service (the empty name, the server as a whole, for `*`) gets no new calls until it
/// answers SERVING again. An upstream without the health service (UNIMPLEMENTED) is not asked
/// again, only connected to; one that cannot be reached is left to passive ejection, and counts
/// as down in the gateway's own health (`UpstreamCluster.isServing`).
final class UpstreamHealthCheck: Sendable {
  static let interval = TimeAmount.seconds(5)

  private let cluster: UpstreamCluster
  private let loop: any EventLoop

  init(cluster: UpstreamCluster, loop: any EventLoop) {
    self.cluster = cluster
    self.loop = loop
  }

  func start() {
    self.loop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: Self.interval) { _ in
      for target in self.cluster.targets { self.check(target) }
    }
  }

  private func check(_ target: UpstreamCluster.Target) {
    let service = self.cluster.route.service == "*" ? "" : self.cluster.route.service
    let health = self.cluster.health
    let address = target.address
    self.cluster.connection(on: self.loop, to: target) { result in
      guard case .success(let connection) = result else {
        health.reached(address, false)
        return
      }
      health.reached(address, true)
      guard !health.skips(address) else { return }
      var request = Grpc_Health_V1_HealthCheckRequest()
      request.service = service
      UpstreamUnaryCall.start(
        on: connection,
        path: "/grpc.health.v1.Health/Check",
        authority: self.cluster.authority,
        secure: self.cluster.secure,
        request: request,
        timeout: .seconds(2)
      ) { result in
        switch result {
        case .success(let bytes):
          let status = (try? Grpc_Health_V1_HealthCheckResponse(serializedBytes: bytes))?.status
          let serving = status == .serving
          if health.set(address, serving: serving) {
            self.cluster.log.notice(
              serving ? "An upstream address is serving again" : "An upstream address is not serving",
              metadata: [
                "sluice.upstream.service": "\(self.cluster.route.service)", "sluice.upstream.address": "\(address)",
                "sluice.upstream.health": "\(status.map { "\($0)" } ?? "invalid answer")",
              ])
          }
        case .failure(let error) where error.code == .unimplemented:
          health.ignore(address)
        case .failure:
          break  // slow: passive ejection's business
        }
      }
    }
  }
}

/// What the health checks found of each address: which answered NOT_SERVING, which have no health
/// service to ask, which could not be reached. An address not yet checked counts as serving.
final class UpstreamHealth: Sendable {
  private struct State {
    var notServing: Set<SocketAddress> = []
    var unchecked: Set<SocketAddress> = []
    var unreachable: Set<SocketAddress> = []
    var observer: (@Sendable () -> Void)?
  }

  private let state = NIOLockedValueBox(State())

  /// Whether calls may go to `address`: it did not answer NOT_SERVING.
  func isServing(_ address: SocketAddress) -> Bool {
    self.state.withLockedValue { !$0.notServing.contains(address) }
  }

  /// Whether `address` was reached and did not answer NOT_SERVING at the last check.
  func isAvailable(_ address: SocketAddress) -> Bool {
    self.state.withLockedValue { !$0.notServing.contains(address) && !$0.unreachable.contains(address) }
  }

  func skips(_ address: SocketAddress) -> Bool {
    self.state.withLockedValue { $0.unchecked.contains(address) }
  }

  /// Calls `body` (on any thread) whenever an address's availability changes.
  func observe(_ body: @escaping @Sendable () -> Void) {
    self.state.withLockedValue { $0.observer = body }
  }

  /// Records a check's answer; true when it changed the address's state.
  func set(_ address: SocketAddress, serving: Bool) -> Bool {
    self.update { state in
      serving ? state.notServing.remove(address) != nil : state.notServing.insert(address).inserted
    }
  }

  /// Records that `address` has no health service: it serves while it can be reached.
  func ignore(_ address: SocketAddress) {
    self.update { state in
      state.unchecked.insert(address)
      return state.notServing.remove(address) != nil
    }
  }

  /// Records whether a check could connect to `address`.
  func reached(_ address: SocketAddress, _ reached: Bool) {
    self.update { state in
      reached ? state.unreachable.remove(address) != nil : state.unreachable.insert(address).inserted
    }
  }

  @discardableResult
  private func update(_ change: (inout State) -> Bool) -> Bool {
    let (changed, observer) = self.state.withLockedValue { state in (change(&state), state.observer) }
    if changed { observer?() }
    return changed
  }
}

/// One unary call on an upstream connection, for the gateway's own use (health checks): the
/// response's bytes, or the call's error.
final class UpstreamUnaryCall: UpstreamStreamDelegate {
  private let connection: UpstreamConnection
  private var stream: Int32?
  private var deframer = GRPCMessageDeframer(maximumMessageBytes: 1 << 20, requests: false)
  private var response: [UInt8]?
  private var completion: ((Result<[UInt8], RPCError>) -> Void)?
  private var timer: Scheduled<Void>?

  private init(connection: UpstreamConnection, completion: @escaping (Result<[UInt8], RPCError>) -> Void) {
    self.connection = connection
    self.completion = completion
  }

  static func start(
    on connection: UpstreamConnection,
    path: String,
    authority: String,
    secure: Bool,
    request: some SwiftProtobuf.Message,
    timeout: TimeAmount,
    completion: @escaping (Result<[UInt8], RPCError>) -> Void
  ) {
    let call = UpstreamUnaryCall(connection: connection, completion: completion)
    var headers = UpstreamMetadata.callHeaders(path: path, authority: authority, secure: secure)
    headers.add(name: "user-agent", value: "sluice")
    headers.add(name: "grpc-timeout", value: "\(timeout.nanoseconds / 1_000_000)m")
    guard let bytes: [UInt8] = try? request.serializedBytes(),
      let stream = connection.openStream(headers, delegate: call)
    else {
      completion(.failure(RPCError(code: .unavailable, message: "the connection is closing")))
      return
    }
    call.stream = stream
    var framed = ByteBuffer()
    framed.writeGRPCMessage(bytes: bytes)
    connection.send(framed, on: stream)
    connection.end(stream)
    call.timer = connection.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
      if let stream = call.stream { connection.reset(stream) }
      call.complete(.failure(RPCError(code: .deadlineExceeded, message: "no answer in time")))
    }
  }

  private func complete(_ result: Result<[UInt8], RPCError>) {
    self.timer?.cancel()
    let completion = self.completion
    self.completion = nil
    completion?(result)
  }

  func upstreamHeaders(_ headers: HPACKHeaders, endStream: Bool) {
    guard endStream else { return }
    self.stream = nil
    let (error, _) = UpstreamMetadata.status(headers)
    if let error {
      self.complete(.failure(error))
    } else if let response = self.response {
      self.complete(.success(response))
    } else {
      self.complete(.failure(RPCError(code: .internalError, message: "no response message")))
    }
  }

  func upstreamData(_ bytes: ByteBuffer, length: Int) {
    self.deframer.append(bytes)
    while let message = try? self.deframer.next() {
      self.response = Array(message.bytes.readableBytesView)
    }
    if let stream = self.stream { self.connection.consumed(length, on: stream) }
  }

  func upstreamTook(_ bytes: Int) {}

  func upstreamClosed(_ reason: UpstreamConnection.CloseReason?) {
    self.stream = nil
    if let reason { self.complete(.failure(UpstreamMetadata.error(for: reason, service: "health"))) }
  }
}

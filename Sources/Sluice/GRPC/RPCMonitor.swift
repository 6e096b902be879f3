public import GRPCCore
public import Logging
internal import Synchronization

/// A server interceptor that counts the RPCs in flight, by method, and their messages, exports
/// them as metrics, and logs one line per ended RPC.
///
/// An RPC counts as in flight from the moment it is routed until its handler has returned or
/// thrown, so a cancelled stream leaves the count as soon as its handler has stopped.
public final class RPCMonitor: ServerInterceptor {
  /// The request metadata key with which the JSON front ends name their transport on the
  /// in-process server (`websocket`, `http`); calls from the network are `grpc`.
  static let transportKey = "sluice-transport"

  private let active: Mutex<[String: Int]>
  private let metrics: GatewayMetrics
  private let logger: Logger

  /// Creates a monitor.
  /// - Parameters:
  ///   - metrics: Where the counts are exported.
  ///   - logger: Receives one info line per ended RPC.
  public init(metrics: GatewayMetrics, logger: Logger) {
    self.active = Mutex([:])
    self.metrics = metrics
    self.logger = logger
  }

  /// The number of RPCs in flight, for all methods or for one (`proto.StreamService/List`).
  public func activeRPCs(method: String? = nil) -> Int {
    self.active.withLock { counts in
      if let method { counts[method, default: 0] } else { counts.values.reduce(0, +) }
    }
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let call = Call(
      ticket: self.begin(
        method: context.descriptor.fullyQualifiedMethod,
        transport: Self.transport(of: request.metadata, peer: context.remotePeer)
      )
    )

    var request = request
    request.metadata.removeAllValues(forKey: Self.transportKey)  // the gateway's own, not the service's
    if call.ticket.transport == .grpc {
      // A network client's keys in the gateway's own namespace are forgeries: drop them (the JSON
      // front ends refuse them outright, with INVALID_ARGUMENT).
      while let forged = request.metadata.first(where: { $0.key.hasPrefix(MetadataKeys.gatewayPrefix) }) {
        request.metadata.removeAllValues(forKey: forged.key)
      }
    }
    request.messages = RPCAsyncSequence(wrapping: CountingSequence(base: request.messages, count: call.received))

    return try await .observingEnd(
      of: { try await next(request, context) },
      writer: { RPCWriter(wrapping: CountingWriter(base: $0, count: call.sent)) },
      ended: { self.finished(call, error: $0) }
    )
  }

  /// An RPC being counted by the engine, from `begin` to `end`.
  struct Ticket {
    let method: String
    let transport: GatewayMetrics.Transport
    let start: ContinuousClock.Instant
  }

  /// The engine routed an RPC: it counts as in flight until `end`.
  func begin(method: String, transport: GatewayMetrics.Transport) -> Ticket {
    self.active.withLock { $0[method, default: 0] += 1 }
    self.metrics.rpcStarted(method: method, transport: transport)
    return Ticket(method: method, transport: transport, start: .now)
  }

  /// The engine's RPC ended with `code` (`ok` or the status code's name).
  func end(_ ticket: Ticket, code: String, received: Int, sent: Int) {
    self.active.withLock { counts in
      counts[ticket.method, default: 1] -= 1
      if counts[ticket.method] == 0 { counts[ticket.method] = nil }
    }
    self.metrics.rpcEnded(method: ticket.method, transport: ticket.transport, code: code)
    self.metrics.messages(ticket.transport, .in, count: received)
    self.metrics.messages(ticket.transport, .out, count: sent)
    self.logger.info(
      "RPC finished",
      metadata: [
        "sluice.rpc.method": "\(ticket.method)",
        "sluice.rpc.transport": "\(ticket.transport.rawValue)",
        "sluice.rpc.code": "\(code)",
        "sluice.rpc.duration": "\(ContinuousClock.now - ticket.start)",
        "sluice.rpc.messages_in": "\(received)",
        "sluice.rpc.messages_out": "\(sent)",
      ]
    )
  }

  private static func transport(of metadata: Metadata, peer: String) -> GatewayMetrics.Transport {
    // Only the in-process server's callers (the gateway's own front ends) may name a transport.
    guard peer.hasPrefix("in-process"),
      let name = metadata[stringValues: Self.transportKey].first(where: { _ in true })
    else { return .grpc }
    return GatewayMetrics.Transport(rawValue: name) ?? .grpc
  }

  private func finished(_ call: Call, error: (any Error)?) {
    let code: String
    switch error {
    case nil: code = "ok"
    case let error as RPCError: code = "\(error.code)"
    case is CancellationError: code = "cancelled"
    case let error?: code = "unknown (\(type(of: error)))"
    }
    self.end(call.ticket, code: code, received: call.received.value, sent: call.sent.value)
  }

  /// One RPC being watched.
  private final class Call: Sendable {
    let ticket: Ticket
    let received = MessageCount()
    let sent = MessageCount()

    init(ticket: Ticket) {
      self.ticket = ticket
    }
  }
}

/// Request messages, counted as the handler reads them.
private struct CountingSequence<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element: Sendable {
  typealias Element = Base.Element
  let base: Base
  let count: MessageCount

  struct AsyncIterator: AsyncIteratorProtocol {
    var base: Base.AsyncIterator
    let count: MessageCount

    mutating func next() async throws -> Element? {
      let element = try await self.base.next()
      if element != nil { self.count.add() }
      return element
    }
  }

  func makeAsyncIterator() -> AsyncIterator {
    AsyncIterator(base: self.base.makeAsyncIterator(), count: self.count)
  }
}

/// Response messages, counted as the handler writes them.
private struct CountingWriter<Element: Sendable>: RPCWriterProtocol {
  let base: RPCWriter<Element>
  let count: MessageCount

  func write(_ element: Element) async throws {
    try await self.base.write(element)
    self.count.add()
  }

  func write(contentsOf elements: some Sequence<Element>) async throws {
    for element in elements { try await self.write(element) }
  }
}

/// A message counter shared by an RPC's wrappers.
private final class MessageCount: Sendable {
  private let count = Atomic<Int>(0)

  var value: Int { self.count.load(ordering: .relaxed) }

  func add() { self.count.add(1, ordering: .relaxed) }
}

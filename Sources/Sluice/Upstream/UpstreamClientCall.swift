internal import GRPCCore
public import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOPosix

/// One call to a gRPC server on the gateway's own HTTP/2 client (`UpstreamConnection` on
/// libnghttp2), for `sluice call --via grpc`: the same client that proxies calls and asks
/// upstreams for reflection, so the command needs no other gRPC stack. Every method goes as a
/// bidirectional stream (the wire is the same for every kind): requests are sent as they are
/// produced, responses handed on as they arrive.
///
/// Flow control both ways: a request waits while more than `sendWindow` bytes of earlier ones
/// have not left for the server; a response's DATA is returned to the server's window only after
/// `onMessage` has taken it, so a slow reader holds the server back.
public enum UpstreamClientCall {
  /// How a call ended: its gRPC status (code 0 is OK) and trailing metadata.
  public struct Status: Sendable {
    public var code: Int
    public var message: String
    public var trailers: [(String, String)]
  }

  /// Request bytes that may be on their way before the next request waits.
  static let sendWindow = 256 << 10

  /// Calls `path` on the server at `address`. `metadata` goes as request headers (`-bin` values
  /// as given, base64); `timeout` as `grpc-timeout`, and kept here too: a server that never
  /// answers ends the call with DEADLINE_EXCEEDED. `onHeaders` and `onMessage` run on the
  /// connection's event loop; an error `onMessage` throws cancels the call and is rethrown, as is
  /// one from `requests`.
  public static func run<Requests: AsyncSequence & Sendable>(
    address: UpstreamAddress,
    tls: UpstreamTLS?,
    path: String,
    metadata: [(String, String)],
    timeout: Duration?,
    requests: Requests,
    onHeaders: @escaping @Sendable ([(String, String)]) -> Void,
    onMessage: @escaping @Sendable ([UInt8]) throws -> Void,
    logger: Logger
  ) async throws -> Status where Requests.Element == [UInt8] {
    // The command prints what the server sent, escaped: fields HTTP does not allow are kept.
    let cluster = try UpstreamCluster(
      route: UpstreamRoute(service: "*", addresses: [address]), tls: tls, logger: logger, keepsInvalidFields: true)
    defer { cluster.closeConnections() }
    let loop = MultiThreadedEventLoopGroup.singleton.any()
    let outcome = loop.makePromise(of: Status.self)
    var headers = UpstreamMetadata.callHeaders(path: path, authority: cluster.authority, secure: cluster.secure)
    headers.add(name: "user-agent", value: "sluice")
    if let timeout {
      headers.add(name: "grpc-timeout", value: UpstreamMetadata.timeout(until: .now() + TimeAmount(timeout)))
    }
    for (name, value) in metadata { headers.add(name: name, value: value) }
    let exchange = try await loop.submit { [headers] in
      let exchange = ClientExchange(
        server: "\(address)", loop: loop, outcome: outcome, onHeaders: onHeaders, onMessage: onMessage)
      cluster.connection(on: loop) { result in
        switch result {
        case .failure(let error): outcome.fail(error)
        case .success(let connection): exchange.start(on: connection, headers: headers)
        }
      }
      if let timeout {
        let timer = loop.scheduleTask(in: TimeAmount(timeout)) {
          outcome.fail(RPCError(code: .deadlineExceeded, message: "no status within --timeout \(timeout)"))
        }
        outcome.futureResult.whenComplete { _ in timer.cancel() }
      }
      return NIOLoopBound(exchange, eventLoop: loop)
    }.get()
    return try await withThrowingTaskGroup(of: Status?.self) { group in
      group.addTask {
        for try await request in requests {
          try await loop.flatSubmit { exchange.value.send(request) }.get()
        }
        loop.execute { exchange.value.end() }
        return nil
      }
      group.addTask { try await outcome.futureResult.get() }
      do {
        while let next = try await group.next() {
          if let status = next {
            group.cancelAll()
            return status
          }
        }
      } catch {
        // A request that failed, or the call's own failure: the stream is reset either way.
        outcome.fail(error)
        group.cancelAll()
        throw error
      }
      throw RPCError(code: .internalError, message: "the call ended without a status")
    }
  }
}

/// One call's stream, on its connection's event loop.
private final class ClientExchange: UpstreamStreamDelegate {
  /// The server's address, as errors name it.
  private let server: String
  private let loop: any EventLoop
  private let outcome: EventLoopPromise<UpstreamClientCall.Status>
  private let onHeaders: @Sendable ([(String, String)]) -> Void
  private let onMessage: @Sendable ([UInt8]) throws -> Void
  private var connection: UpstreamConnection?
  private var stream: Int32?
  private var deframer = GRPCMessageDeframer(maximumMessageBytes: 64 << 20, requests: false)
  /// Request bytes sent that the server's window has not taken yet, and a send waiting for room.
  private var inFlight = 0
  private var waiting: EventLoopPromise<Void>?
  /// Sends and the end that came before the stream was open.
  private var early: [ByteBuffer] = []
  private var endEarly = false
  private var headersSeen = false
  private var done = false

  init(
    server: String,
    loop: any EventLoop,
    outcome: EventLoopPromise<UpstreamClientCall.Status>,
    onHeaders: @escaping @Sendable ([(String, String)]) -> Void,
    onMessage: @escaping @Sendable ([UInt8]) throws -> Void
  ) {
    self.server = server
    self.loop = loop
    self.outcome = outcome
    self.onHeaders = onHeaders
    self.onMessage = onMessage
    // Any end (the status, a failure, the timeout) resets a stream still open and frees a sender.
    outcome.futureResult.assumeIsolated().whenComplete { result in
      self.done = true
      if let stream = self.stream, case .failure = result { self.connection?.reset(stream) }
      self.stream = nil
      self.waiting?.succeed()
      self.waiting = nil
    }
  }

  func start(on connection: UpstreamConnection, headers: HPACKHeaders) {
    guard !self.done else { return }
    guard let stream = connection.openStream(headers, delegate: self) else {
      self.outcome.fail(RPCError(code: .unavailable, message: "its connection is closing"))
      return
    }
    self.connection = connection
    self.stream = stream
    for message in self.early { connection.send(message, on: stream) }
    self.early.removeAll()
    if self.endEarly { connection.end(stream) }
  }

  /// Frames and sends one request; the future completes when the next may be sent.
  func send(_ message: [UInt8]) -> EventLoopFuture<Void> {
    guard !self.done else { return self.loop.makeSucceededVoidFuture() }
    var framed = ByteBuffer()
    framed.writeGRPCMessage(bytes: message)
    self.inFlight += framed.readableBytes
    if let connection = self.connection, let stream = self.stream {
      connection.send(framed, on: stream)
    } else {
      self.early.append(framed)
    }
    guard self.inFlight > UpstreamClientCall.sendWindow else { return self.loop.makeSucceededVoidFuture() }
    let waiting = self.loop.makePromise(of: Void.self)
    self.waiting = waiting
    return waiting.futureResult
  }

  /// The requests are over: half-closes the stream.
  func end() {
    guard !self.done else { return }
    if let connection = self.connection, let stream = self.stream {
      connection.end(stream)
    } else {
      self.endEarly = true
    }
  }

  // MARK: - UpstreamStreamDelegate

  func upstreamHeaders(_ headers: HPACKHeaders, endStream: Bool) {
    guard !self.done else { return }
    // The first block (headers, or trailers-only) says whether this is a gRPC response at all.
    if !self.headersSeen {
      self.headersSeen = true
      if let refusal = UpstreamMetadata.refusal(headers) {
        self.outcome.fail(refusal)
        return
      }
    }
    guard endStream else {
      self.onHeaders(UpstreamMetadata.responseMetadata(headers).map { ($0.name, $0.value) })
      return
    }
    self.stream = nil
    guard !self.deframer.hasPartialMessage else {
      self.outcome.fail(GRPCErrors.truncatedResponse)
      return
    }
    let (error, rest) = UpstreamMetadata.status(headers)
    let trailers = rest.map { ($0.name, $0.value) }
    self.outcome.succeed(
      UpstreamClientCall.Status(
        code: error.map { $0.code.rawValue } ?? 0, message: error?.message ?? "", trailers: trailers))
  }

  func upstreamData(_ bytes: ByteBuffer, length: Int) {
    guard !self.done else { return }
    self.deframer.append(bytes)
    do {
      while let message = try self.deframer.next() {
        guard !message.compressed else { throw GRPCErrors.responseCompressedWithoutEncoding }
        try self.onMessage(Array(message.bytes.readableBytesView))
      }
    } catch {
      self.outcome.fail(error)
      return
    }
    if let connection = self.connection, let stream = self.stream { connection.consumed(length, on: stream) }
  }

  func upstreamTook(_ bytes: Int) {
    self.inFlight -= bytes
    if self.inFlight <= UpstreamClientCall.sendWindow, let waiting = self.waiting {
      self.waiting = nil
      waiting.succeed()
    }
  }

  func upstreamClosed(_ reason: UpstreamConnection.CloseReason?) {
    self.stream = nil
    if let reason { self.outcome.fail(UpstreamMetadata.error(for: reason, service: self.server)) }
  }
}

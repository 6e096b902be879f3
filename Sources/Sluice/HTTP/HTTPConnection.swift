internal import AsyncAlgorithms
internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHTTP1
internal import ServiceLifecycle
internal import SluiceCodec
internal import Synchronization

/// One HTTP/1.1 connection that did not become a WebSocket: requests one after another
/// (keep-alive), each an HTTP JSON call, a CORS preflight or a file of `public/`.
///
/// A reader task moves the request parts from the socket into a rendezvous channel, so a call
/// can read its body and also notice the client hanging up while its response streams.
struct HTTPConnection {
  let bridge: JSONBridge
  let configuration: GatewayConfiguration
  let originPolicy: OriginPolicy
  let staticFiles: StaticFiles?
  let budget: RequestByteBudget
  /// `--require-bearer`'s check, which `/metrics` passes too.
  let authenticator: BearerAuthenticator?
  let metrics: GatewayMetrics
  let logger: Logger

  func run(_ channel: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async throws {
    let allocator = channel.channel.allocator
    let idle = IdleState()
    self.metrics.connectionOpened(.http)
    defer { self.metrics.connectionClosed(.http) }
    try await channel.executeThenClose { inbound, outbound in
      let parts = AsyncChannel<HTTPServerRequestPart>()
      try await withGracefulShutdownHandler {
        try await withThrowingTaskGroup(of: Void.self) { group in
          group.addTask {
            defer { parts.finish() }
            for try await part in inbound { await parts.send(part) }
          }
          var readAhead: HTTPServerRequestPart?
          while idle.beginRequest() {
            var part = readAhead
            if part == nil { part = await self.nextPart(of: parts, on: channel.channel) }
            guard case .head(let head) = part else { break }  // closed, or a stray part
            guard idle.startResponse() else { break }
            let outcome = try await self.respond(
              to: head, parts: parts, outbound: outbound, allocator: allocator, eventLoop: channel.channel.eventLoop)
            readAhead = outcome.readAhead
            // Skip what is left of a request answered without reading it all, so that a client
            // still sending it reads the answer rather than a reset connection.
            let ended = outcome.requestEnded ? true : await self.skipRest(of: parts)
            guard outcome.keepAlive, head.isKeepAlive, ended else { break }
          }
          group.cancelAll()
        }
      } onGracefulShutdown: {
        // An idle connection closes now; a busy one after its response.
        if idle.shutDown() { channel.channel.close(promise: nil) }
      }
    }
  }

  private func respond(
    to head: HTTPRequestHead,
    parts: AsyncChannel<HTTPServerRequestPart>,
    outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>,
    allocator: ByteBufferAllocator,
    eventLoop: any EventLoop
  ) async throws -> HTTPCall.Outcome {
    let path = head.path
    let origin = head.headers.first(name: "Origin")
    let closing = HTTPCall.Outcome(keepAlive: false, readAhead: nil, requestEnded: false)

    func answer(_ response: HTTPStatusResponse) async throws -> HTTPCall.Outcome {
      try await response.write(to: outbound, allocator: allocator, includingBody: head.method != .HEAD)
      return closing
    }

    if let refusal = self.originPolicy.refusal(head.headers) {
      return try await answer(refusal)
    }
    let cors = CORS.headers(origin: origin)
    let method = self.bridge.registry.method(path: path)

    switch head.method {
    case .OPTIONS:
      var headers = CORS.preflightHeaders(origin: origin, request: head.headers)
      var allowed = ["GET", "HEAD", "OPTIONS"]
      if let method {
        allowed = HTTPCall.allowedMethods(for: method, allowGet: self.configuration.allowGetCalls).map { "\($0)" }
      }
      headers.add(name: "Allow", value: allowed.joined(separator: ", "))
      headers.add(name: "Content-Length", value: "0")
      try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: .noContent, headers: headers)))
      try await outbound.write(.end(nil))
      return HTTPCall.Outcome(keepAlive: true, readAhead: nil, requestEnded: false)
    case _ where method != nil:
      let call = HTTPCall(
        bridge: self.bridge,
        method: method!,
        head: head,
        path: path,
        configuration: self.configuration,
        corsHeaders: cors,
        eventLoop: eventLoop,
        budget: self.budget,
        metrics: self.metrics,
        logger: self.logger
      )
      return try await call.serve(parts: parts, outbound: outbound, allocator: allocator, keepAlive: head.isKeepAlive)
    case .GET where path == "/metrics":
      if let authenticator = self.authenticator,
        !authenticator.allows(authorization: head.headers.first(name: "Authorization"))
      {
        var headers = cors
        headers.add(name: "WWW-Authenticate", value: "Bearer")
        return try await answer(
          HTTPStatusResponse(
            .unauthorized,
            code: .unauthenticated,
            message: "/metrics requires authorization: Bearer <token> (--require-bearer)",
            headers: headers
          )
        )
      }
      let body = self.metrics.exposition()
      var headers = cors
      headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
      headers.add(name: CORS.noSniff.name, value: CORS.noSniff.value)
      headers.add(name: "Content-Length", value: "\(body.count)")
      try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)))
      try await outbound.write(.body(.byteBuffer(allocator.buffer(bytes: body))))
      try await outbound.write(.end(nil))
      return HTTPCall.Outcome(keepAlive: true, readAhead: nil, requestEnded: false)
    case .GET, .HEAD:
      guard let file = await self.staticFiles?.file(at: path) else {
        return try await answer(
          HTTPStatusResponse(.notFound, code: .notFound, message: "no file at \(path)", headers: cors))
      }
      var headers = cors
      headers.add(name: "Content-Type", value: file.contentType)
      headers.add(name: CORS.noSniff.name, value: CORS.noSniff.value)
      headers.add(name: "Content-Length", value: "\(file.body.readableBytes)")
      headers.add(name: "Cache-Control", value: "no-cache")
      try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)))
      if head.method == .GET { try await outbound.write(.body(.byteBuffer(file.body))) }
      try await outbound.write(.end(nil))
      return HTTPCall.Outcome(keepAlive: true, readAhead: nil, requestEnded: false)
    default:
      // A POST (or anything else) to a path that is no method: the WebSocket side's answer too.
      return try await answer(
        HTTPStatusResponse(
          .notImplemented,
          code: .unimplemented,
          message: "unknown method \(path): paths are /<package>.<Service>/<Method>",
          headers: cors
        )
      )
    }
  }
}

extension HTTPConnection {
  /// The next request part, or nil when the connection closed or stayed idle for `--idle-timeout`
  /// (a timer on the event loop closes it then; cheaper than a task per request).
  fileprivate func nextPart(
    of parts: AsyncChannel<HTTPServerRequestPart>,
    on channel: any Channel
  ) async -> HTTPServerRequestPart? {
    let idleTimer = channel.eventLoop.scheduleTask(in: TimeAmount(self.configuration.idleTimeout)) {
      channel.close(promise: nil)
    }
    defer { idleTimer.cancel() }
    var iterator = parts.makeAsyncIterator()
    return await iterator.next()
  }

  /// How long, and how many bytes, the rest of an unread request may take to skip.
  static let skipLimit = (time: Duration.seconds(2), bytesPerMessageLimit: 2)

  /// Reads and drops the rest of the current request; true when its end arrived within the limits.
  fileprivate func skipRest(of parts: AsyncChannel<HTTPServerRequestPart>) async -> Bool {
    let maxBytes = self.configuration.maxMessageBytes * Self.skipLimit.bytesPerMessageLimit
    return await withTaskGroup(of: Bool.self) { group in
      group.addTask {
        var skipped = 0
        for await part in parts {
          switch part {
          case .end: return true
          case .body(let chunk):
            skipped += chunk.readableBytes
            if skipped > maxBytes { return false }
          case .head: return false
          }
        }
        return false
      }
      group.addTask {
        try? await Task.sleep(for: Self.skipLimit.time)
        return false
      }
      let ended = await group.next() ?? false
      group.cancelAll()
      return ended
    }
  }
}

/// Whether a connection is between requests, so a graceful shutdown can close it at once.
private final class IdleState: Sendable {
  private struct State {
    var busy = false
    var shuttingDown = false
  }

  private let state = Mutex(State())

  /// Marks the wait for the next request; false once shutting down.
  func beginRequest() -> Bool {
    self.state.withLock { state in
      state.busy = false
      return !state.shuttingDown
    }
  }

  /// Marks a request being answered; false when the shutdown came first.
  func startResponse() -> Bool {
    self.state.withLock { state in
      state.busy = true
      return !state.shuttingDown
    }
  }

  /// Marks the shutdown; true when the connection is idle and can be closed now.
  func shutDown() -> Bool {
    self.state.withLock { state in
      state.shuttingDown = true
      return !state.busy
    }
  }
}

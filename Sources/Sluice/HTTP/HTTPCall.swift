internal import AsyncAlgorithms
internal import Foundation
internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHTTP1
internal import SluiceCodec

/// One RPC over plain HTTP (PROTOCOL.md, "HTTP JSON"): the request as one JSON document (unary
/// and server-streaming methods; or a `request` query parameter on a GET, for `EventSource`) or
/// as NDJSON (client-streaming and bidi methods, the end of the body being the half-close); the
/// response as one JSON document, NDJSON or Server-Sent Events.
///
/// Like a WebSocket session, it is a few concurrent parts in one task group: the RPC (through
/// `JSONBridge.run`, writing responses as they arrive), the body reader (NDJSON lines handed over
/// through a rendezvous channel) and, once the body is in, a watcher that notices the client
/// hanging up. The first to end the call decides its outcome; the others are cancelled.
struct HTTPCall {
  let bridge: JSONBridge
  let method: SluiceCodec.MethodDescriptor
  let head: HTTPRequestHead
  let path: String
  let configuration: GatewayConfiguration
  /// CORS headers for the answer (empty for same-origin and non-browser clients).
  let corsHeaders: HTTPHeaders
  /// The connection's event loop, for the `--body-timeout` timers.
  let eventLoop: any EventLoop
  /// The gateway-wide `--max-buffered-request-bytes`.
  let budget: RequestByteBudget
  let metrics: GatewayMetrics
  let logger: Logger

  /// What the connection does after the call.
  struct Outcome {
    /// Whether another request may follow on the connection.
    var keepAlive: Bool
    /// The first part of the next request, when the client sent it while this call was running.
    var readAhead: HTTPServerRequestPart?
    /// Whether the request was read to its end (otherwise the rest must be skipped).
    var requestEnded: Bool
  }

  private enum Event: Sendable {
    case call(Result<Metadata, RPCError>)
    case body(BodyEnd)
    case watcher(WatchEnd)
  }

  private enum BodyEnd: Sendable {
    case complete
    case failed(RPCError, HTTPResponseStatus?)
    case gone
    case stopped
  }

  private enum WatchEnd: Sendable {
    case clientGone
    case readAhead(HTTPServerRequestPart)
    case stopped
  }

  /// The HTTP methods this RPC answers: POST, or PUT (what `curl -T` sends); GET only for
  /// server-streaming methods (for `EventSource`).
  static func allowedMethods(for method: SluiceCodec.MethodDescriptor, allowGet: Bool) -> [HTTPMethod] {
    method.kind == .serverStreaming && allowGet ? [.GET, .POST, .PUT, .OPTIONS] : [.POST, .PUT, .OPTIONS]
  }

  var allowedMethods: [HTTPMethod] {
    Self.allowedMethods(for: self.method, allowGet: self.configuration.allowGetCalls)
  }

  /// Media types accepted as JSON request bodies: curl's `-d` default and `fetch`'s default for a
  /// string body (which needs no CORS preflight) are accepted too.
  static let acceptedContentTypes: Set<String> = [
    "application/json", "application/x-ndjson", "application/jsonl", "application/x-www-form-urlencoded",
    "text/plain",
  ]

  func serve(
    parts: AsyncChannel<HTTPServerRequestPart>,
    outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>,
    allocator: ByteBufferAllocator,
    keepAlive: Bool
  ) async throws -> Outcome {
    let responder = HTTPCallResponder(
      framing: self.framing,
      outbound: outbound,
      allocator: allocator,
      headers: self.corsHeaders,
      metrics: self.metrics
    )
    let closing = Outcome(keepAlive: false, readAhead: nil, requestEnded: false)

    guard self.allowedMethods.contains(self.head.method), self.head.method != .OPTIONS else {
      var headers = self.corsHeaders
      headers.add(name: "Allow", value: self.allowedMethods.map { "\($0)" }.joined(separator: ", "))
      let response = HTTPStatusResponse(
        .methodNotAllowed,
        code: .unimplemented,
        message:
          "\(self.path) answers \(self.allowedMethods.map { "\($0)" }.joined(separator: ", ")), not \(self.head.method)",
        headers: headers
      )
      try await response.write(to: outbound, allocator: allocator)
      return closing
    }

    // Everything that can be refused before the RPC starts.
    let metadata: Metadata
    let timeout: Duration?
    var single: [UInt8]?
    var bodyRead = false
    do {
      try self.checkContentType()
      (metadata, timeout) = try RequestMetadata.from(headers: self.head.headers)
      if self.head.method == .GET {
        single = try self.bridge.encodeRequest(try self.queryRequest(), for: self.method)
        guard try await self.readBody(parts, allowEmpty: true) != nil else { return closing }
        bodyRead = true
      } else if self.method.takesOneRequest {
        if let length = self.head.headers.first(name: "Content-Length").flatMap(Int.init),
          length > self.configuration.maxMessageBytes
        {
          throw self.tooLarge("the request body")
        }
        try await self.sendContinueIfExpected(outbound)
        guard let body = try await self.readBody(parts) else { return closing }  // client gone
        bodyRead = true
        single = try self.bridge.encodeRequest(try self.bridge.parse(body.readableBytesView), for: self.method)
      } else {
        try await self.sendContinueIfExpected(outbound)
      }
    } catch let error as RPCError {
      try await responder.writeError(error, status: self.status(for: error))
      return Outcome(keepAlive: false, readAhead: nil, requestEnded: bodyRead)
    }

    let requests = AsyncChannel<[UInt8]>()
    let producer: @Sendable (RPCWriter<[UInt8]>) async throws -> Void
    if let single {
      producer = { try await $0.write(single) }
    } else {
      producer = { writer in
        for await message in requests { try await writer.write(message) }
      }
    }

    var bodyComplete = bodyRead
    var callResult: Result<Metadata, RPCError>?
    var bodyFailure: (RPCError, HTTPResponseStatus?)?
    var clientGone = false
    var readAhead: HTTPServerRequestPart?

    await withTaskGroup(of: Event.self) { group in
      group.addTask {
        .call(
          await self.bridge.run(
            self.method,
            metadata: metadata,
            timeout: timeout,
            transport: .http,
            requests: producer,
            onHeaders: { responder.headers($0) },
            onMessage: { try await responder.message($0) }
          )
        )
      }
      if single != nil {
        group.addTask { .watcher(await Self.watch(parts)) }
      } else {
        group.addTask { .body(await self.pump(parts, into: requests)) }
      }

      while let event = await group.next() {
        switch event {
        case .call(let result):
          callResult = result
          requests.finish()
          group.cancelAll()
        case .body(.complete):
          bodyComplete = true
          if callResult == nil, !clientGone { group.addTask { .watcher(await Self.watch(parts)) } }
        case .body(.failed(let error, let status)):
          bodyFailure = bodyFailure ?? (error, status)
          group.cancelAll()
        case .body(.gone), .watcher(.clientGone):
          clientGone = true
          group.cancelAll()
        case .watcher(.readAhead(let part)):
          readAhead = part
        case .body(.stopped), .watcher(.stopped):
          break
        }
      }
    }

    let result: Result<Metadata, RPCError> =
      clientGone
      ? .failure(RPCError(code: .cancelled, message: "the client went away"))
      : bodyFailure.map { .failure($0.0) } ?? callResult
        ?? .failure(RPCError(code: .cancelled, message: "the call was stopped"))
    let code: String
    switch result {
    case .success: code = "ok"
    case .failure(let error): code = "\(error.code)"
    }
    self.logger.debug(
      "HTTP RPC ended",
      metadata: [
        "sluice.rpc.method": "\(self.path)", "sluice.rpc.code": "\(code)", "sluice.http.framing": "\(self.framing)",
      ]
    )
    if clientGone { return closing }
    let canContinue = try await responder.finish(
      result,
      keepAlive: keepAlive && bodyComplete,
      errorStatus: bodyFailure?.1
    )
    return Outcome(keepAlive: canContinue, readAhead: readAhead, requestEnded: bodyComplete)
  }

  private var framing: HTTPCallResponder.Framing {
    switch self.method.kind {
    case .unary, .clientStreaming:
      return .json
    case .serverStreaming, .bidirectionalStreaming:
      let accept = self.head.headers["Accept"].joined(separator: ",").lowercased()
      return accept.contains("text/event-stream") ? .eventStream : .ndjson
    }
  }

  /// 413 for a request that is too large, 408 for one that did not arrive in time (the only
  /// deadline before the RPC runs is `--body-timeout`); the standard mapping otherwise.
  private func status(for error: RPCError) -> HTTPResponseStatus? {
    if error.code == .deadlineExceeded { return .requestTimeout }
    return error.code == .resourceExhausted && error.message.hasPrefix(Self.tooLargePrefix) ? .payloadTooLarge : nil
  }

  private static let tooLargePrefix = "request too large: "

  private func tooLarge(_ what: String) -> RPCError {
    RPCError(
      code: .resourceExhausted,
      message:
        "\(Self.tooLargePrefix)\(what) is larger than the \(self.configuration.maxMessageBytes)-byte limit (--max-message-bytes)"
    )
  }

  private func checkContentType() throws(RPCError) {
    guard self.head.method != .GET, let contentType = self.head.headers.first(name: "Content-Type") else { return }
    let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
    guard let mediaType, Self.acceptedContentTypes.contains(mediaType) else {
      throw RPCError(
        code: .invalidArgument,
        message: "Content-Type \(contentType) is not JSON: send application/json (or application/x-ndjson for streams)"
      )
    }
  }

  /// The request of a GET: `?request=<JSON>` (URL-encoded); `{}` when absent.
  private func queryRequest() throws(RPCError) -> JSONValue {
    // Form encoding writes spaces as `+`; JSON's own `+` arrives as `%2B`.
    let uri = self.head.uri.replacingOccurrences(of: "+", with: "%20")
    let items = URLComponents(string: uri)?.queryItems ?? []
    guard let text = items.first(where: { $0.name == "request" })?.value else { return .object([:]) }
    return try self.bridge.parse(Array(text.utf8))
  }

  private func sendContinueIfExpected(_ outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>) async throws {
    if self.head.headers["Expect"].contains(where: { $0.lowercased() == "100-continue" }) {
      try await outbound.write(.head(HTTPResponseHead(version: self.head.version, status: .continue)))
    }
  }

  /// The whole body of a single-message request, within the message limit; nil when the client
  /// went away.
  private func readBody(
    _ parts: AsyncChannel<HTTPServerRequestPart>,
    allowEmpty: Bool = false
  ) async throws(RPCError) -> ByteBuffer? {
    // `RequestBodyTimeout`, on the event loop, holds this body to `--body-timeout`.
    var held = 0
    defer { self.budget.release(held) }
    var body = ByteBuffer()
    for await part in parts {
      switch part {
      case .body(var chunk):
        self.metrics.bytes(.http, .in, count: chunk.readableBytes)
        guard body.readableBytes + chunk.readableBytes <= self.configuration.maxMessageBytes else {
          throw self.tooLarge("the request body")
        }
        guard self.budget.reserve(chunk.readableBytes) else { throw self.budget.exhausted }
        held += chunk.readableBytes
        body.writeBuffer(&chunk)
      case .end:
        guard body.readableBytes > 0 || allowEmpty else {
          throw RPCError(code: .invalidArgument, message: "\(self.path) needs one JSON request message in the body")
        }
        return body
      case .head:
        throw RPCError(code: .invalidArgument, message: "a request head arrived inside a body")
      }
    }
    return nil
  }

  /// Reads an NDJSON body, handing each message to the RPC as its line completes.
  private func pump(_ parts: AsyncChannel<HTTPServerRequestPart>, into requests: AsyncChannel<[UInt8]>) async
    -> BodyEnd
  {
    var lines = NDJSONLines(maxLineBytes: self.configuration.maxMessageBytes)
    var lineNumber = 0
    func send(_ line: [UInt8]) async throws(RPCError) {
      lineNumber += 1
      if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") }) {
        return  // blank lines separate nothing
      }
      do throws(RPCError) {
        let value = try self.bridge.parse(line)
        if case .object(let object) = value, let first = object.members.first, first.key.hasPrefix("$") {
          throw RPCError(
            code: .invalidArgument,
            message: "control frames such as \(first.key) are WebSocket-only: over HTTP, use headers and end the body"
          )
        }
        await requests.send(try self.bridge.encodeRequest(value, for: self.method))
      } catch {
        throw RPCError(code: error.code, message: "line \(lineNumber): \(error.message)")
      }
    }

    // An unfinished line is held to `--body-timeout` from its first byte and to the budget.
    var deadline: BodyDeadline?
    var held = 0
    defer {
      deadline?.cancel()
      self.budget.release(held)
    }
    do throws(RPCError) {
      for await part in parts {
        switch part {
        case .body(let chunk):
          self.metrics.bytes(.http, .in, count: chunk.readableBytes)
          let completed = try self.lines(&lines, chunk)
          let pending = lines.pendingBytes
          if pending > held {
            guard self.budget.reserve(pending - held) else { throw self.budget.exhausted }
          } else {
            self.budget.release(held - pending)
          }
          held = pending
          if !completed.isEmpty || pending == 0 {
            deadline?.cancel()
            deadline = nil
          }
          // Lines first: the wait while the service takes them is not the client's to pay for.
          for line in completed { try await send(line) }
          if pending > 0, deadline == nil {
            deadline = BodyDeadline(in: self.configuration.bodyTimeout, on: self.eventLoop, parts: parts)
          }
        case .end:
          if let last = lines.finish() { try await send(last) }
          requests.finish()
          return .complete
        case .head:
          throw RPCError(code: .invalidArgument, message: "a request head arrived inside a body")
        }
        if Task.isCancelled { return .stopped }
      }
      if deadline?.hasExpired == true {
        throw bodyTimedOut("an NDJSON line", after: self.configuration.bodyTimeout)
      }
      return Task.isCancelled ? .stopped : .gone
    } catch {
      return .failed(error, self.status(for: error))
    }
  }

  private func lines(_ lines: inout NDJSONLines, _ chunk: ByteBuffer) throws(RPCError) -> [[UInt8]] {
    do {
      return try lines.append(chunk)
    } catch {
      throw self.tooLarge("an NDJSON line")
    }
  }

  /// Waits, after the body, for the connection to end (the client hung up) or for the next
  /// request to begin.
  private static func watch(_ parts: AsyncChannel<HTTPServerRequestPart>) async -> WatchEnd {
    var iterator = parts.makeAsyncIterator()
    if let part = await iterator.next() { return .readAhead(part) }
    return Task.isCancelled ? .stopped : .clientGone
  }
}

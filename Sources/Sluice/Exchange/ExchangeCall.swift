internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP1
internal import SluiceCodec

/// What every protocol adapter on an `HTTPExchange` shares (gRPC-Web's `GRPCWebCall`, Connect's
/// `ConnectCall`): the call's `CallLifecycle` on the engine, JSON messages through the bridge for a
/// JSON codec, the request bytes held in `--max-buffered-request-bytes`, `--body-timeout` for a
/// message begun (or the one message a unary or server-streaming call waits for), holding requests
/// back, a client gone, a graceful shutdown, and ending exactly once.
///
/// A subclass is its protocol's framing: it reads the body (`receivedBody`, `receivedEnd`), says how
/// many request bytes it holds (`heldRequestBytes`), frames responses (`send`), and writes the
/// status (`writeEnd`) and a refusal (`writeRefusal`). Everything runs on the exchange's event loop.
class ExchangeCall: HTTPExchangeHandler, CallResponder {
  let exchange: any HTTPExchange
  let engine: RPCEngine
  let metrics: GatewayMetrics
  let transport: GatewayMetrics.Transport
  let request: HTTPExchangeRequest
  /// The method's gRPC path: the request's own, or the one a REST route maps it to.
  let path: String
  /// Headers every answer carries (CORS).
  let cors: HTTPHeaders
  /// The descriptors of the JSON codec, taken when the call begins (writing JSON as the request's
  /// `Sluice-JSON-Output` asks, once the call starts).
  private(set) var bridge: JSONBridge
  /// With a JSON codec: the method whose messages are translated.
  private(set) var jsonMethod: SluiceCodec.MethodDescriptor?

  private(set) var lifecycle = CallLifecycle()
  /// The handler's response metadata, sent with the response head.
  var initialMetadata: HPACKHeaders = [:]
  /// The response has ended (or the client is gone): nothing more is written.
  private(set) var done = false
  private(set) var requestEnded = false
  private var requestsHeld = false
  /// Request bytes held, reserved in the engine's budget.
  private var heldBytes = 0
  private var bodyTimer: Scheduled<Void>?
  private(set) var messageCompressed = false

  init(
    exchange: any HTTPExchange,
    request: HTTPExchangeRequest,
    transport: GatewayMetrics.Transport,
    engine: RPCEngine,
    bridge: JSONBridge,
    metrics: GatewayMetrics,
    cors: HTTPHeaders,
    path: String? = nil
  ) {
    self.exchange = exchange
    self.request = request
    self.path = path ?? request.path
    self.transport = transport
    self.engine = engine
    self.bridge = bridge
    self.metrics = metrics
    self.cors = cors
  }

  // MARK: - What a protocol's framing provides

  /// The request's head arrived: the framing checks it, then `start`s the call (or refuses it).
  func begin() {}

  /// Request bytes the framing holds (a message begun, a unary body so far).
  var heldRequestBytes: Int { 0 }

  /// Whether the call waits for one request message from its start (for `--body-timeout`).
  var waitsForOneMessage: Bool {
    self.lifecycle.method.map { $0.kind == .unary || $0.kind == .serverStreaming } ?? false
  }

  /// Writes the call's status (nil: OK) and the handler's trailers; the response ends after it.
  func writeEnd(_ error: RPCError?, trailers: HPACKHeaders) {}

  /// Writes the answer to a request refused before its call started; `status` overrides the
  /// protocol's own for a request that is not a call of it at all (a wrong HTTP method, codec).
  func writeRefusal(_ error: RPCError, status: HTTPResponseStatus?) {}

  /// The status the call ends with, given the handler's (a unary protocol turns an OK without a
  /// response into an error).
  func finalStatus(_ error: RPCError?) -> RPCError? { error }

  /// The call started and the handler gave its response metadata (`initialMetadata`).
  func started(_ method: RPCMethod) {}

  /// The handler sent its response headers itself (a proxy): `initialMetadata` holds them.
  func headersReady() {}

  // MARK: - Starting

  /// Routes, admits and starts the call with the request's metadata (less the protocol's `framing`
  /// headers) and `timeout`; with `json`, the method needs descriptors. Refusals are answered.
  func start(timeout: Duration?, json: Bool, framing: (String) -> Bool = { _ in false }) {
    if json {
      guard let method = self.bridge.registry.method(path: self.path) else {
        // Credentials first, as for every other refusal: without them, nothing is told.
        let refusal =
          self.engine.credentialRefusal(self.request.headers["Authorization"])
          ?? (self.engine.router.method(path: self.path) == nil
            ? GRPCErrors.unknownMethod(self.path) : GRPCErrors.jsonNeedsDescriptors(self.path))
        return self.refuse(refusal)
      }
      do {
        self.bridge = try self.bridge.forRequest(self.request.headers)
      } catch {
        return self.refuse(self.engine.credentialRefusal(self.request.headers["Authorization"]) ?? error)
      }
      self.jsonMethod = method
    }
    let metadata = self.request.callMetadata(path: self.path, secure: self.exchange.isSecure) { key in
      framing(key) || key == JSONCodec.EncodingOptions.headerName
    }
    let refusal = self.lifecycle.begin(
      self.engine,
      path: self.path,
      metadata: metadata,
      timeout: timeout,
      origin: CallOrigin(peerAddress: self.exchange.remoteAddress, source: .metadata),
      transport: self.transport,
      responder: self,
      expired: { self.exchange.inCallback { self.stop(GRPCErrors.deadlineExceeded) } }
    )
    if let refusal {
      if self.engine.echoMetadata { MetadataEcho.echo(metadata, into: &self.initialMetadata) }
      return self.refuse(refusal)
    }
    guard let method = self.lifecycle.method, let handler = self.lifecycle.handler, let call = self.lifecycle.call
    else { return }
    if let initial = CallLifecycle.start(handler, call, engine: self.engine) {
      self.initialMetadata = initial
    }
    self.started(method)
    self.account()
  }

  /// A request refused before its call started.
  func refuse(_ error: RPCError, status: HTTPResponseStatus? = nil) {
    guard !self.done else { return }
    self.done = true
    self.writeRefusal(error, status: status)
    // The body of a refused request is not read: a kept-alive HTTP/1.1 connection skips it.
    self.exchange.endResponse(reusable: true)
    self.exchange.flushSoon()
  }

  // MARK: - The request

  func receivedBody(_ chunk: ByteBuffer) {}

  func receivedEnd() {
    self.requestEnded = true
  }

  /// Whether the call still takes request messages.
  var isReceiving: Bool { !self.done && self.lifecycle.isRunning }

  /// Appends `chunk` to a unary request's whole body, within `--max-message-bytes`; past it the
  /// call stops with the message-too-large error and this returns false.
  func append(_ chunk: ByteBuffer, to body: inout ByteBuffer) -> Bool {
    let total = body.readableBytes + chunk.readableBytes
    guard total <= self.engine.maximumMessageBytes else {
      self.stop(GRPCErrors.messageTooLarge(total, limit: self.engine.maximumMessageBytes, received: true))
      return false
    }
    var chunk = chunk
    body.writeBuffer(&chunk)
    return true
  }

  /// One request message to the handler: inflated when `compressed` (`gzip` says whether the
  /// request declared gzip), translated from JSON with a JSON codec.
  func deliver(_ message: ByteBuffer, compressed: Bool, gzip: Bool) throws(RPCError) {
    guard let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
    var bytes = message
    if compressed {
      guard gzip else { throw GRPCErrors.compressedWithoutEncoding }
      bytes = try GzipMessage.inflate(bytes, limit: self.engine.maximumMessageBytes)
    }
    if let method = self.jsonMethod {
      let binary = try self.bridge.encodeRequest(try self.bridge.parse(bytes.readableBytesView), for: method)
      bytes = self.exchange.allocator.buffer(bytes: binary)
    }
    self.cancelBodyTimer()
    self.lifecycle.receiving()
    self.messageCompressed = compressed
    handler.received(bytes, call)
  }

  /// The request has ended: the handler is told (the framing checked what it holds).
  func deliverEnd() {
    self.account()
    guard !self.done, let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
    handler.receivedEnd(call)
  }

  /// Brings the call's hold on the budget and its body timer up to date with `heldRequestBytes`.
  func account() {
    guard !self.done, self.lifecycle.isRunning else { return }
    let held = self.heldRequestBytes
    if held > self.heldBytes {
      guard self.engine.budget.reserve(held - self.heldBytes) else {
        return self.stop(GRPCErrors.requestBufferFull(limit: self.engine.budget.limit))
      }
    } else if held < self.heldBytes {
      self.engine.budget.release(self.heldBytes - held)
    }
    self.heldBytes = held
    let waiting =
      !self.requestEnded && !self.requestsHeld
      && (held > 0 || (self.waitsForOneMessage && self.lifecycle.messagesIn == 0))
    if !waiting {
      self.cancelBodyTimer()
    } else if self.bodyTimer == nil {
      let timeout = self.engine.bodyTimeout
      self.bodyTimer = self.exchange.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
        self.bodyTimer = nil
        self.exchange.inCallback { self.stop(GRPCErrors.bodyTimedOut("the request message", after: timeout)) }
      }
    }
  }

  private func cancelBodyTimer() {
    self.bodyTimer?.cancel()
    self.bodyTimer = nil
  }

  func becameWritable() {
    guard !self.done, let handler = self.lifecycle.handler, let call = self.lifecycle.call else { return }
    handler.becameWritable(call)
  }

  func exchangeGone() {
    guard !self.done else { return }
    self.done = true
    self.ended(code: "\(RPCError.Code.cancelled)")?.stopped()
  }

  func quiesce() {
    guard !self.done, let method = self.lifecycle.method, method.kind != .unary else { return }
    self.stop(GRPCErrors.shuttingDown)
  }

  // MARK: - CallResponder

  var eventLoop: any EventLoop { self.exchange.eventLoop }

  var isWritable: Bool { self.exchange.isWritable }

  var outputTurn: ConnectionTurn? { self.exchange.outputTurn }

  func send(serialized message: [UInt8], compressed: Bool) {}

  /// A response message as the protocol carries it: JSON with a JSON codec; nil (the call is
  /// stopped) when it does not translate or is over `--max-message-bytes`.
  func responsePayload(_ message: [UInt8]) -> [UInt8]? {
    guard !self.done, self.lifecycle.isRunning else { return nil }
    var payload = message
    if let method = self.jsonMethod {
      do {
        payload = try self.bridge.decodeResponse(message, for: method)
      } catch {
        self.stop(error)
        return nil
      }
    }
    guard payload.count <= self.engine.maximumMessageBytes else {
      self.stop(GRPCErrors.messageTooLarge(payload.count, limit: self.engine.maximumMessageBytes, received: false))
      return nil
    }
    self.lifecycle.sending()
    return payload
  }

  func sendHeaders(_ metadata: HPACKHeaders) {
    guard !self.done, let call = self.lifecycle.call else { return }
    self.initialMetadata = self.engine.responseMetadata(metadata, for: call)
    self.headersReady()
  }

  func holdRequests(_ hold: Bool) {
    guard !self.done, hold != self.requestsHeld else { return }
    self.requestsHeld = hold
    self.exchange.holdRequests(hold)
    self.account()
  }

  func finish(_ error: RPCError?, trailers: HPACKHeaders) {
    guard !self.done, self.lifecycle.isRunning else { return }
    self.end(error, trailers: trailers)
  }

  // MARK: - The end

  /// Ends the call without its handler (a deadline, a bad request frame, a shutdown).
  func stop(_ error: RPCError) {
    guard !self.done else { return }
    let handler = self.lifecycle.handler
    self.end(error, trailers: [:])
    handler?.stopped()
  }

  private func end(_ error: RPCError?, trailers: HPACKHeaders) {
    guard !self.done else { return }
    let error = self.finalStatus(error)
    self.done = true
    self.ended(code: error.map { "\($0.code)" } ?? "ok")
    self.writeEnd(error, trailers: trailers)
    self.exchange.endResponse(reusable: true)
    self.exchange.flushSoon()
  }

  /// Bookkeeping once the call is over, whichever way it ended.
  @discardableResult
  private func ended(code: String) -> (any RPCHandler)? {
    let handler = self.lifecycle.end(self.engine, code: code)
    self.cancelBodyTimer()
    if self.heldBytes > 0 {
      self.engine.budget.release(self.heldBytes)
      self.heldBytes = 0
    }
    if self.requestsHeld {
      self.requestsHeld = false
      self.exchange.holdRequests(false)
    }
    return handler
  }

  /// Counts and writes response body bytes.
  func write(_ bytes: ByteBuffer) {
    self.metrics.bytes(self.transport, .out, count: bytes.readableBytes)
    self.exchange.writeBody(bytes)
  }
}

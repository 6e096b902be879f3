internal import GRPCCore
internal import NIOCore
internal import NIOHPACK

/// One call's life in the engine, kept the same way by every front end (the native stream, the
/// WebSocket session, the HTTP JSON call; a new protocol's adapter keeps one too): routing and
/// admission through `RPCEngine.begin`, the handler and the `ServerCall` it answers through, its
/// start with the response metadata every front end sends (`--echo-metadata` included), the
/// `grpc-timeout` deadline on the call's event loop, the messages counted each way, and the
/// admission released exactly once, whichever way the call ends.
///
/// A value kept by its adapter, which calls the handler itself with `handler` and `call` copied
/// out first: a handler may end the call from inside any of its methods, and the adapter then
/// calls `end` on this same value.
struct CallLifecycle {
  /// The routed method, from `begin` on (kept after the call ends).
  private(set) var method: RPCMethod?
  /// The handler and what it answers through, from `begin` until `end`.
  private(set) var handler: (any RPCHandler)?
  private(set) var call: ServerCall?
  private var admission: RPCEngine.Admission?
  private var deadline: Scheduled<Void>?
  /// Request messages handed to the handler, response messages sent.
  private(set) var messagesIn = 0
  private(set) var messagesOut = 0

  /// The call has begun and not ended.
  var isRunning: Bool { self.handler != nil }

  /// Routes and admits the call (see `RPCEngine.admit`), makes its handler, and arms its
  /// `timeout`: `expired` (given when there is a timeout) runs on the responder's event loop if the
  /// call is still running then.
  /// Nil, or why the call is refused (nothing is held then).
  mutating func begin(
    _ engine: RPCEngine,
    path: String,
    metadata: HPACKHeaders,
    timeout: Duration?,
    origin: CallOrigin,
    transport: GatewayMetrics.Transport,
    responder: any CallResponder,
    expired: (() -> Void)?
  ) -> RPCError? {
    let begun = engine.begin(
      path: path,
      metadata: metadata,
      deadline: timeout.map { .now() + TimeAmount($0) },
      origin: origin,
      transport: transport,
      responder: responder
    )
    switch begun {
    case .failure(let error):
      return error
    case .success(let started):
      self.method = started.admission.method
      self.admission = started.admission
      self.handler = started.handler
      self.call = started.call
      if let timeout, let expired {
        self.deadline = responder.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout), expired)
      }
      return nil
    }
  }

  /// Starts the begun handler (a static call with the handler copied out: see the type's note);
  /// returns the response metadata it begins with, echo included, or nil when it sends its
  /// headers later (`sendHeaders`, through `responseMetadata`).
  static func start(_ handler: any RPCHandler, _ call: ServerCall, engine: RPCEngine) -> HPACKHeaders? {
    handler.start(call).map { engine.responseMetadata($0, for: call) }
  }

  /// Counts request messages about to be handed to the handler.
  mutating func receiving(_ count: Int = 1) {
    self.messagesIn &+= count
  }

  /// Counts response messages sent.
  mutating func sending(_ count: Int = 1) {
    self.messagesOut &+= count
  }

  /// The call is over with `code` (`ok` or a status code's name): the deadline is cancelled, the
  /// handler and call let go, and the admission released (once; later calls release nothing).
  /// Returns the handler it had, for an adapter that stops it (`stopped()`).
  @discardableResult
  mutating func end(_ engine: RPCEngine, code: String) -> (any RPCHandler)? {
    self.deadline?.cancel()
    self.deadline = nil
    let handler = self.handler
    self.handler = nil
    self.call = nil
    if let admission = self.admission {
      self.admission = nil
      engine.release(admission, code: code, received: self.messagesIn, sent: self.messagesOut)
    }
    return handler
  }
}

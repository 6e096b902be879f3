internal import GRPCCore
internal import SluiceCodec

/// The protocol of one WebSocket session (PROTOCOL.md, "WebSocket session"), as a value: it takes
/// what happened (a frame, the RPC's end, the client gone, a shutdown, a timer) and says what to
/// do. `WebSocketSessionHandler` feeds it on the connection's event loop and carries the actions
/// out; tests drive it without sockets.
///
/// A session goes `awaitingFirstFrame` → `running` → `closing` → `closed`:
/// - the RPC starts with the client's first frame, which may carry `$metadata` and `$timeoutMs`;
/// - while it runs, messages go to its handler; `$end` or the client's Close half-closes it;
/// - whatever ends it (the handler's status, bad input, `$cancel`, the deadline, a shutdown)
///   sends `$end` and Close exactly once, then waits for the client's Close, at most
///   `closeHandshakeTimeout`, before closing TCP; a client that goes away ends it silently.
struct WebSocketSessionStateMachine {
  enum State: Equatable {
    case awaitingFirstFrame
    /// `halfClosed`: the client has sent its last message; `clientClosed`: its Close came too.
    case running(halfClosed: Bool, clientClosed: Bool)
    /// `$end` and Close went out; TCP closes on the client's Close or the timeout.
    case closing
    case closed
  }

  /// A control frame (an object whose first key starts with `$`), read by `ControlFrame.parse`.
  struct ControlFrame: Equatable {
    var metadata: Metadata?
    var timeout: Duration?
    var end = false
    var cancel = false
  }

  /// How the session ends, for `$end` and Close.
  struct Ending: Equatable {
    /// nil: the RPC succeeded.
    var error: RPCError?
    /// Close code: 1000 for OK, 4000 + the gRPC code otherwise, 1001 when the gateway is going
    /// away.
    var closeCode: Int
    /// Whether the RPC's handler is still running and must be stopped first.
    var stopsHandler: Bool
    /// Whether TCP closes as soon as the frames are written (the client's Close already came);
    /// otherwise after the closing handshake.
    var closesNow: Bool
  }

  enum Action: Equatable {
    case none
    /// Start the RPC (when `start`), hand it `message` (when there is one), then its request's
    /// end (when `end`).
    case run(start: Bool, message: [UInt8]?, end: Bool)
    /// Send `$end` (with the handler's trailers when it succeeded) and Close.
    case end(Ending)
    /// Close TCP now, stopping the handler first when `stopsHandler` (the client is gone).
    case close(stopsHandler: Bool)
  }

  private(set) var state = State.awaitingFirstFrame
  /// Unary and server-streaming methods: the client's one message is its half-close.
  let takesOneRequest: Bool
  let path: String

  init(path: String, takesOneRequest: Bool) {
    self.path = path
    self.takesOneRequest = takesOneRequest
  }

  /// Whether the RPC's handler runs (it may send).
  var isRunning: Bool {
    if case .running = self.state { return true }
    return false
  }

  // MARK: - From the client

  /// A request message, already translated to protobuf.
  mutating func receivedMessage(_ message: [UInt8]) -> Action {
    switch self.state {
    case .awaitingFirstFrame:
      self.state = .running(halfClosed: self.takesOneRequest, clientClosed: false)
      return .run(start: true, message: message, end: self.takesOneRequest)
    case .running(let halfClosed, let clientClosed):
      guard !halfClosed else {
        return self.fail(
          self.takesOneRequest ? GRPCErrors.expectedOneJSONMessage(got: 2) : GRPCErrors.messageAfterEnd
        )
      }
      self.state = .running(halfClosed: self.takesOneRequest, clientClosed: clientClosed)
      return .run(start: false, message: message, end: self.takesOneRequest)
    case .closing, .closed:
      return .none
    }
  }

  /// A control frame (its `$ping`s are answered before it comes here).
  mutating func receivedControl(_ control: ControlFrame) -> Action {
    switch self.state {
    case .awaitingFirstFrame:
      if control.cancel { return self.fail(GRPCErrors.cancelledByClient) }
      return self.halfClose(start: true, clientClosed: false, explicit: control.end)
    case .running(let halfClosed, _):
      if control.metadata != nil || control.timeout != nil {
        let key = control.metadata != nil ? "$metadata" : "$timeoutMs"
        return self.fail(GRPCErrors.onlyInFirstFrame(key))
      }
      if control.cancel { return self.fail(GRPCErrors.cancelledByClient) }
      guard control.end, !halfClosed else { return .none }
      return self.halfClose(start: false, clientClosed: false, explicit: true)
    case .closing, .closed:
      return .none
    }
  }

  /// The client's Close: a half-close while the RPC runs; the end of the closing handshake after.
  mutating func receivedClose() -> Action {
    switch self.state {
    case .awaitingFirstFrame:
      return self.halfClose(start: true, clientClosed: true, explicit: true)
    case .running(let halfClosed, _):
      guard !halfClosed else {
        self.state = .running(halfClosed: true, clientClosed: true)
        return .none
      }
      return self.halfClose(start: false, clientClosed: true, explicit: true)
    case .closing:
      self.state = .closed
      return .close(stopsHandler: false)
    case .closed:
      return .none
    }
  }

  /// The client broke the protocol (bad JSON, a wrong shape, a binary or oversized frame).
  mutating func receivedInvalid(_ error: RPCError) -> Action {
    self.fail(error)
  }

  /// The connection went away (or stopped answering pings): nobody is left to tell.
  mutating func clientGone() -> Action {
    switch self.state {
    case .closed:
      return .none
    case .running:
      self.state = .closed
      return .close(stopsHandler: true)
    case .awaitingFirstFrame, .closing:
      self.state = .closed
      return .close(stopsHandler: false)
    }
  }

  // MARK: - From the RPC and the gateway

  /// The handler ended the call (nil: OK), or the engine refused it.
  mutating func rpcFinished(_ error: RPCError?) -> Action {
    guard case .running(_, let clientClosed) = self.state else { return .none }
    self.state = clientClosed ? .closed : .closing
    let closeCode = error.map { 4000 + $0.code.rawValue } ?? 1000
    return .end(Ending(error: error, closeCode: closeCode, stopsHandler: false, closesNow: clientClosed))
  }

  /// The call's deadline passed, or the gateway failed it (a response it could not translate).
  mutating func rpcFailed(_ error: RPCError) -> Action {
    guard self.isRunning else { return .none }
    return self.fail(error)
  }

  /// A graceful shutdown began: every session ends with `UNAVAILABLE` and Close 1001.
  mutating func shuttingDown() -> Action {
    switch self.state {
    case .awaitingFirstFrame, .running:
      let running = self.isRunning
      self.state = .closing
      return .end(Ending(error: GRPCErrors.shuttingDown, closeCode: 1001, stopsHandler: running, closesNow: false))
    case .closing, .closed:
      return .none
    }
  }

  /// The closing handshake took too long: close TCP.
  mutating func closeTimedOut() -> Action {
    guard self.state == .closing else { return .none }
    self.state = .closed
    return .close(stopsHandler: false)
  }

  // MARK: - Helpers

  /// `GRPCErrors.cancelledByClient`, by its old name (the state machine's tests use it).
  static var cancelledByClient: RPCError { GRPCErrors.cancelledByClient }

  /// Ends the session with `error`, before or while the RPC runs.
  private mutating func fail(_ error: RPCError) -> Action {
    switch self.state {
    case .awaitingFirstFrame, .running:
      let running = self.isRunning
      self.state = .closing
      return .end(
        Ending(error: error, closeCode: 4000 + error.code.rawValue, stopsHandler: running, closesNow: false))
    case .closing, .closed:
      return .none
    }
  }

  /// The client has sent its last message (`$end`, its Close, or just a first frame when
  /// `explicit` is false): starts the RPC when `start`, and hands it the end.
  private mutating func halfClose(start: Bool, clientClosed: Bool, explicit: Bool) -> Action {
    guard explicit else {
      self.state = .running(halfClosed: false, clientClosed: false)
      return .run(start: true, message: nil, end: false)
    }
    if start, self.takesOneRequest {
      // Nothing was started: the session ends here, before the RPC.
      return self.fail(GRPCErrors.expectedOneJSONMessage(got: 0))
    }
    self.state = .running(halfClosed: true, clientClosed: clientClosed)
    return .run(start: start, message: nil, end: true)
  }
}

extension WebSocketSessionStateMachine.ControlFrame {
  /// Reads a control frame's members: `$metadata` (at most `maxMetadataBytes`, the HTTP port's
  /// `--max-header-bytes`), `$timeoutMs`, `$end`, `$cancel` and `$ping` (whose values are returned
  /// for the pongs); anything else is `INVALID_ARGUMENT`.
  static func parse(
    _ object: JSONObject,
    maxMetadataBytes: Int
  ) throws(RPCError) -> (frame: Self, pings: [JSONValue]) {
    var frame = Self()
    var pings: [JSONValue] = []
    for (key, value) in object.members {
      switch key {
      case "$metadata":
        guard case .object(let members) = value else {
          throw GRPCErrors.metadataNotObject
        }
        var metadata = frame.metadata ?? Metadata()
        try RequestMetadata.add(members, to: &metadata, maxBytes: maxMetadataBytes)
        frame.metadata = metadata
      case "$timeoutMs":
        frame.timeout = try RequestMetadata.timeout(fromMilliseconds: value)
      case "$end":
        frame.end = true
      case "$cancel":
        frame.cancel = true
      case "$ping":
        pings.append(value)
      default:
        throw GRPCErrors.invalidControlFrame(key)
      }
    }
    return (frame, pings)
  }
}

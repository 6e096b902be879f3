internal import GRPCCore
internal import SluiceCodec

/// The errors of the WebSocket front end: its frames and its control frames.
extension GRPCErrors {
  /// A `$cancel` control frame.
  static let cancelledByClient = RPCError(code: .cancelled, message: "cancelled by the client ($cancel)")

  /// A message after the client's `$end` on a streaming method.
  static let messageAfterEnd = RPCError(
    code: .invalidArgument,
    message: "a message after $end: the client had already half-closed"
  )

  /// `$metadata` or `$timeoutMs` (`key`) after the first frame.
  static func onlyInFirstFrame(_ key: String) -> RPCError {
    RPCError(code: .invalidArgument, message: "\(key) is only allowed in the first frame")
  }

  /// A `$metadata` that is not a JSON object.
  static let metadataNotObject = RPCError(code: .invalidArgument, message: "$metadata must be an object")

  /// A control frame with a member (`key`) that is neither a known control nor allowed beside one.
  static func invalidControlFrame(_ key: String) -> RPCError {
    RPCError(
      code: .invalidArgument,
      message: key.hasPrefix("$")
        ? "unknown control frame \(key) (expected $metadata, $timeoutMs, $end, $cancel or $ping)"
        : "a control frame cannot carry message field \"\(key)\""
    )
  }

  /// A binary frame: messages are JSON text.
  static let binaryFrame = RPCError(
    code: .invalidArgument,
    message: "binary frames are not supported: send each message as a JSON text frame"
  )

  /// A frame that RFC 6455 forbids from a client (`violation` names the rule).
  static func frameViolation(_ violation: String) -> RPCError {
    RPCError(code: .invalidArgument, message: violation)
  }

  /// A fragmented message the aggregator rejected for anything but its size.
  static func invalidFragmentedFrame(_ error: some Error) -> RPCError {
    RPCError(code: .invalidArgument, message: "invalid fragmented frame: \(error)")
  }

  /// A frame NIOWebSocket's decoder rejected for anything but its length.
  static func webSocketProtocolError(_ error: some Error) -> RPCError {
    RPCError(code: .invalidArgument, message: "WebSocket protocol error: \(error)")
  }
}

/// The errors of the multiplexed WebSocket session (PROTOCOL.md, "Multiplexed WebSocket session").
extension GRPCErrors {
  /// A frame that is not a JSON object (close 4400).
  static let muxFrameNotObject = RPCError(
    code: .invalidArgument,
    message: "every frame of a multiplexed session is a JSON object with an \"id\" (or {\"ping\":N})"
  )

  /// A frame without `id` that is not a ping (close 4400).
  static let muxFrameWithoutID = RPCError(
    code: .invalidArgument,
    message: "a frame without \"id\": every stream frame names its stream (only {\"ping\":N} has none)"
  )

  /// An `id` that is neither a string of at most 64 characters nor an integer below 2^53 (close 4400).
  static func muxUnreadableID(_ id: JSONValue) -> RPCError {
    let shown = String(id.serialized.prefix(80))
    return RPCError(
      code: .invalidArgument,
      message: "id \(shown) is not readable: ids are strings of at most 64 characters or integers from 0 to 2^53-1"
    )
  }

  /// A `start` whose id is already open (close 4409).
  static func muxDuplicateID(_ id: MuxStreamID) -> RPCError {
    RPCError(code: .invalidArgument, message: "start for id \(id.json.serialized), which is already open")
  }

  /// A stream frame member the protocol does not have.
  static func muxUnknownMember(_ key: String) -> RPCError {
    let shown = String(key.prefix(64))
    return RPCError(
      code: .invalidArgument,
      message:
        "unknown member \"\(shown)\" in a stream frame (expected id, start, metadata, timeoutMs, credit, message, end or cancel)"
    )
  }

  /// A stream frame member of the wrong shape (`expected` says what it takes).
  static func muxInvalidMember(_ key: String, _ expected: String) -> RPCError {
    RPCError(code: .invalidArgument, message: "\"\(key)\" must be \(expected)")
  }

  /// `metadata` or `timeoutMs` in a frame that is not a `start`.
  static func muxOnlyInStart(_ key: String) -> RPCError {
    RPCError(code: .invalidArgument, message: "\"\(key)\" is only allowed in the start frame")
  }

  /// A `start` past `--max-streams-per-session`.
  static func muxTooManyStreams(limit: Int) -> RPCError {
    RPCError(
      code: .resourceExhausted,
      message: "the session already has \(limit) open streams (--max-streams-per-session)"
    )
  }

  /// A request message past the stream's request credit.
  static let muxRequestCreditExceeded = RPCError(
    code: .resourceExhausted,
    message: "a request message past the stream's credit: wait for a {\"credit\":N} frame before sending more"
  )

  /// A `cancel` frame.
  static let muxCancelledByClient = RPCError(code: .cancelled, message: "cancelled by the client (cancel)")

  /// A stream still waiting for response credit when the client's Close came: nobody will grant it.
  static let muxCancelledWaitingForCredit = RPCError(
    code: .cancelled,
    message: "the client closed the session while this stream waited for response credit"
  )

  /// A message after the stream's `end` on a streaming method.
  static let muxMessageAfterEnd = RPCError(
    code: .invalidArgument,
    message: "a message after end: the client had already half-closed this stream"
  )
}

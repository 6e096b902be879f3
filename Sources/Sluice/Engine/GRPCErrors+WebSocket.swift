internal import GRPCCore

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

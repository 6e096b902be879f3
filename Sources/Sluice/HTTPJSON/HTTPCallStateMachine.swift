internal import GRPCCore
internal import NIOHPACK
internal import NIOHTTP1

/// The response side of one HTTP JSON call (PROTOCOL.md, "HTTP JSON"), as a value: it takes the
/// RPC's messages and its end and says what to write. `HTTPCall` feeds it on the connection's
/// event loop; tests drive it without sockets.
///
/// The status line waits for the first response message or the end, so an RPC that fails before
/// it sends anything gets a mapped HTTP status and a `google.rpc.Status` body; after that, the
/// outcome travels in the `$end` line. A single-response method's one message is held until the
/// status says it succeeded.
struct HTTPCallStateMachine {
  /// How responses are framed.
  enum Framing: Equatable {
    /// One JSON document (unary and client-streaming methods).
    case json
    /// One JSON document per line, then `{"$end":…}` (server-streaming and bidi methods).
    case ndjson
    /// Server-Sent Events: each NDJSON line as the `data` of one event.
    case eventStream

    var contentType: String {
      switch self {
      case .json: "application/json"
      case .ndjson: "application/x-ndjson"
      case .eventStream: "text/event-stream"
      }
    }
  }

  enum State: Equatable {
    /// Nothing written yet.
    case waiting
    /// `.json` framing: the one response, held until the end.
    case holding([UInt8])
    /// The status line went out; messages are lines.
    case streaming
    case ended
  }

  enum MessageAction: Equatable {
    /// Held (a single-response method's message, written with the end).
    case hold
    /// Write the status line (200, the initial metadata as headers), then the message's line.
    case writeHeadAndLine
    case writeLine
    /// The service broke its method's contract: end the call with this error.
    case fail(RPCError)
    /// The call is over.
    case drop
  }

  enum EndAction: Equatable {
    /// 200 with the one message as the body; the initial metadata and the trailers as headers.
    case writeSingle([UInt8])
    /// Streaming, no message sent yet: the status line, then the `$end` line.
    case writeHeadAndEndLine
    /// Streaming after messages: the `$end` line ends the body.
    case writeEndLine
    /// An error before anything was written: this HTTP status and a `google.rpc.Status` body;
    /// the connection closes after it.
    case writeError(RPCError, HTTPResponseStatus)
    case none
  }

  let framing: Framing
  private(set) var state = State.waiting

  init(framing: Framing) {
    self.framing = framing
  }

  /// Whether the status line went out (then errors are `$end` lines, not HTTP statuses).
  var headSent: Bool {
    self.state == .streaming
  }

  mutating func message(_ json: [UInt8]) -> MessageAction {
    switch self.state {
    case .waiting:
      if self.framing == .json {
        self.state = .holding(json)
        return .hold
      }
      self.state = .streaming
      return .writeHeadAndLine
    case .holding:
      return .fail(GRPCErrors.extraResponse)
    case .streaming:
      return .writeLine
    case .ended:
      return .drop
    }
  }

  /// The RPC ended: OK when `error` is nil. `errorStatus` overrides the standard gRPC-to-HTTP
  /// mapping for an error answer (413 for a request too large, 408 for a body too slow).
  mutating func finished(_ error: RPCError?, errorStatus: HTTPResponseStatus? = nil) -> EndAction {
    let state = self.state
    self.state = .ended
    switch (state, error) {
    case (.ended, _):
      return .none
    case (.streaming, _):
      return .writeEndLine
    case (.waiting, let error?), (.holding, let error?):
      return .writeError(error, errorStatus ?? error.code.httpStatus)
    case (.holding(let json), nil):
      return .writeSingle(json)
    case (.waiting, nil) where self.framing == .json:
      let error = GRPCErrors.missingResponse
      return .writeError(error, error.code.httpStatus)
    case (.waiting, nil):
      return .writeHeadAndEndLine
    }
  }
}

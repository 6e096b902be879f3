internal import AsyncAlgorithms
internal import GRPCCore
internal import NIOCore
internal import NIOWebSocket
internal import SluiceCodec
internal import Synchronization

extension WebSocketSession {
  /// Reads the client's frames until it half-closes and closes, goes away, or breaks the protocol.
  func read(
    _ inbound: NIOAsyncChannelInboundStream<WebSocketFrame>,
    into events: AsyncChannel<Inbound>,
    method: SluiceCodec.MethodDescriptor,
    writer: WebSocketFrameWriter,
    lastHeard: Liveness
  ) async -> ReaderEnd {
    var isFirstFrame = true
    var halfClosed = false
    func halfClose() {
      if !halfClosed {
        halfClosed = true
        events.finish()
      }
    }

    do {
      for try await frame in inbound {
        lastHeard.touch()
        switch frame.opcode {
        case .text:
          self.metrics.bytes(.websocket, .in, count: frame.length)
          let value = try self.bridge.parse(frame.unmaskedData.readableBytesView)
          defer { isFirstFrame = false }
          if case .object(let object) = value, let first = object.members.first, first.key.hasPrefix("$") {
            switch try await self.control(object, isFirstFrame: isFirstFrame, events: events, writer: writer) {
            case .continue: break
            case .halfClose: halfClose()
            case .cancel: return .failed(RPCError(code: .cancelled, message: "cancelled by the client ($cancel)"))
            }
          } else {
            guard !halfClosed else {
              throw RPCError(
                code: .invalidArgument,
                message: method.takesOneRequest
                  ? "\(self.path) takes exactly one request message; this was a second one"
                  : "a message after $end: the client had already half-closed"
              )
            }
            await events.send(.message(try self.bridge.encodeRequest(value, for: method)))
            if method.takesOneRequest { halfClose() }
          }
        case .binary:
          throw RPCError(
            code: .invalidArgument,
            message: "binary frames are not supported: send each message as a JSON text frame"
          )
        case .ping:
          try await writer.pong(echoing: frame.unmaskedData)
        case .connectionClose:
          halfClose()
          return .closedByClient
        default:
          break  // pongs; continuations are reassembled by the aggregator
        }
      }
      return .gone
    } catch let error as RPCError {
      return .failed(error)
    } catch let error as NIOWebSocketError where error == .invalidFrameLength {
      return .failed(self.tooLarge())
    } catch let error as NIOWebSocketFrameAggregator.Error {
      if error == .accumulatedFrameSizeIsTooLarge || error == .tooManyFragments { return .failed(self.tooLarge()) }
      return .failed(RPCError(code: .invalidArgument, message: "invalid fragmented frame: \(error)"))
    } catch is CancellationError {
      return .gone
    } catch let error as NIOWebSocketError {
      return .failed(RPCError(code: .invalidArgument, message: "WebSocket protocol error: \(error)"))
    } catch {
      return .gone
    }
  }

  private func tooLarge() -> RPCError {
    RPCError(
      code: .resourceExhausted,
      message: "frame larger than the \(self.configuration.maxMessageBytes)-byte limit (--max-message-bytes)"
    )
  }

  enum ControlOutcome {
    case `continue`, halfClose, cancel
  }

  /// Handles a control frame: an object whose keys all start with `$`.
  private func control(
    _ object: JSONObject,
    isFirstFrame: Bool,
    events: AsyncChannel<Inbound>,
    writer: WebSocketFrameWriter
  ) async throws -> ControlOutcome {
    var metadata = Metadata()
    var timeout: Duration?
    var outcome = ControlOutcome.continue
    for (key, value) in object.members {
      switch key {
      case "$metadata", "$timeoutMs":
        guard isFirstFrame else {
          throw RPCError(code: .invalidArgument, message: "\(key) is only allowed in the first frame")
        }
        if key == "$timeoutMs" {
          timeout = try RequestMetadata.timeout(fromMilliseconds: value)
        } else if case .object(let members) = value {
          try RequestMetadata.add(members, to: &metadata, maxBytes: self.configuration.maxHeaderBytes)
        } else {
          throw RPCError(code: .invalidArgument, message: "$metadata must be an object")
        }
      case "$end":
        outcome = .halfClose
      case "$cancel":
        return .cancel
      case "$ping":
        try await writer.send(json: JSONValue.object(["$pong": value]).serializedBytes)
      default:
        throw RPCError(
          code: .invalidArgument,
          message: key.hasPrefix("$")
            ? "unknown control frame \(key) (expected $metadata, $timeoutMs, $end, $cancel or $ping)"
            : "a control frame cannot carry message field \"\(key)\""
        )
      }
    }
    if isFirstFrame, !metadata.isEmpty || timeout != nil {
      await events.send(.metadata(metadata, timeout))
    }
    return outcome
  }

  /// Pings a peer that has been quiet for `interval`; reports it unresponsive when it has sent
  /// nothing (not even the pong) for an interval after the ping, or when the ping could not even
  /// be written within an interval: a peer that stopped reading while responses wait for it.
  static func keepalive(
    every interval: Duration,
    lastHeard: Liveness,
    writer: WebSocketFrameWriter
  ) async -> Event {
    var pingedAt: ContinuousClock.Instant?
    while true {
      do {
        try await Task.sleep(for: interval)
        let heard = lastHeard.instant()
        if let pingedAt, heard < pingedAt { return .peerUnresponsive }
        pingedAt = nil
        if ContinuousClock.now - heard >= interval {
          pingedAt = .now
          guard try await Self.ping(writer, within: interval) else { return .peerUnresponsive }
        }
      } catch {
        return .stopped
      }
    }
  }

  /// Writes a ping; false when the write is still waiting (the socket full) after `limit`.
  private static func ping(_ writer: WebSocketFrameWriter, within limit: Duration) async throws -> Bool {
    try await withThrowingTaskGroup(of: Bool.self) { group in
      group.addTask {
        try await writer.ping()
        return true
      }
      group.addTask {
        try await Task.sleep(for: limit)
        return false
      }
      defer { group.cancelAll() }
      return try await group.next() ?? false
    }
  }
}

/// When the peer was last heard from (any frame), for keepalive.
final class Liveness: Sendable {
  private let lastHeard = Mutex(ContinuousClock.now)

  func touch() { self.lastHeard.withLock { $0 = .now } }

  func instant() -> ContinuousClock.Instant { self.lastHeard.withLock { $0 } }
}

internal import GRPCCore
internal import NIOCore
internal import NIOWebSocket

/// What both kinds of WebSocket session share: keepalive (`--ws-ping-interval`) and the reading of
/// the pipeline's errors.
///
/// Keepalive: every interval, a peer quiet for that long gets a ping; one that has sent nothing
/// since the last ping (not even its pong, or the ping could not be written to a full socket) is
/// gone. One timer per session, on its event loop.
final class WebSocketKeepalive {
  private let interval: TimeAmount?
  private var timer: Scheduled<Void>?
  private var lastHeard = NIODeadline.now()
  private var pingedAt: NIODeadline?

  init(interval: TimeAmount?) {
    self.interval = interval
  }

  /// The peer sent something.
  func heard() {
    self.lastHeard = .now()
  }

  /// Arms the timer: at each interval it does nothing once `isLive` is false, and calls `gone`
  /// when the peer stopped answering.
  func start(context: ChannelHandlerContext, isLive: @escaping () -> Bool, gone: @escaping () -> Void) {
    guard let interval = self.interval else { return }
    self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: interval) {
      guard isLive() else { return }
      if let pingedAt = self.pingedAt, self.lastHeard < pingedAt { return gone() }
      self.pingedAt = nil
      if NIODeadline.now() - self.lastHeard >= interval {
        self.pingedAt = .now()
        context.writeAndFlush(
          NIOAny(WebSocketFrames.ping(allocator: context.channel.allocator)),
          promise: nil
        )
      }
      self.start(context: context, isLive: isLive, gone: gone)
    }
  }

  func stop() {
    self.timer?.cancel()
    self.timer = nil
  }

  /// The session error a pipeline error means: a frame the decoder, the aggregator or the
  /// validator refused (`maxMessageBytes` names the size limit); nil for an I/O error (a reset, a
  /// TLS error), after which nobody is left to tell.
  static func sessionError(_ error: any Error, maxMessageBytes: Int) -> RPCError? {
    let tooLarge = GRPCErrors.requestTooLarge("a WebSocket message", limit: maxMessageBytes)
    switch error {
    case let error as RPCError:
      return error
    case let error as NIOWebSocketError where error == .invalidFrameLength:
      return tooLarge
    case let error as NIOWebSocketFrameAggregator.Error:
      return error == .accumulatedFrameSizeIsTooLarge || error == .tooManyFragments
        ? tooLarge : GRPCErrors.invalidFragmentedFrame(error)
    case let error as NIOWebSocketError:
      return GRPCErrors.webSocketProtocolError(error)
    default:
      return nil
    }
  }
}

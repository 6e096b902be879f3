internal import GRPCCore
internal import NIOCore
internal import NIOWebSocket

/// Holds a WebSocket session's unfinished messages to `--body-timeout` and the gateway's
/// `--max-buffered-request-bytes`: a frame whose bytes trickle in, or a fragmented message whose
/// final fragment never comes, ends the session with `DEADLINE_EXCEEDED` once the timeout passes
/// from the message's first byte; bytes past the budget end it with `RESOURCE_EXHAUSTED`.
///
/// Two handlers share one state on the connection's event loop: `bytes` sits before NIO's frame
/// decoder and counts what arrives; `frames` sits after it (before the fragment aggregator) and
/// settles each message's bytes when its last frame is decoded. Bytes counted but not settled are
/// an unfinished message, held in the decoder or the aggregator. Written by hand: neither
/// NIOWebSocket's decoder nor its aggregator has a time limit, and both buffer out of sight.
final class WebSocketMessageGuard {
  private let timeout: TimeAmount
  private let bodyTimeout: Duration
  private let budget: RequestByteBudget
  private var received = 0
  private var settled = 0
  private var unfinishedFrames = 0
  private var reserved = 0
  /// When the unfinished message began; nil when nothing is unfinished.
  private var messageStart: NIODeadline?
  /// One timer at a time, moved on lazily: a message that ends before it fires costs no
  /// rescheduling, so the guard adds no timer work per message on a busy session.
  private var timer: Scheduled<Void>?
  private var failed = false
  private var framesContext: ChannelHandlerContext?

  init(bodyTimeout: Duration, budget: RequestByteBudget) {
    self.bodyTimeout = bodyTimeout
    self.timeout = TimeAmount(bodyTimeout)
    self.budget = budget
  }

  /// The handler before the frame decoder.
  var bytes: Bytes { Bytes(guard: self) }
  /// The handler after the frame decoder.
  var frames: Frames { Frames(guard: self) }

  private func arrived(_ count: Int, on loop: any EventLoop) {
    guard !self.failed else { return }
    self.received += count
    guard self.budget.reserve(count) else { return self.fail(GRPCErrors.requestBufferFull(limit: self.budget.limit)) }
    self.reserved += count
    if self.messageStart == nil {
      self.messageStart = loop.now
      self.armTimer(on: loop)
    }
  }

  private func decoded(_ frame: WebSocketFrame, on loop: any EventLoop) {
    let size = Self.wireSize(of: frame)
    let endsMessage = frame.fin || frame.opcode.isControlOpcode
    if !endsMessage {
      self.unfinishedFrames += size
      return
    }
    // A control frame may come between the fragments of a message: it settles only itself.
    let done = frame.opcode.isControlOpcode ? size : size + self.unfinishedFrames
    if !frame.opcode.isControlOpcode { self.unfinishedFrames = 0 }
    self.settled += done
    self.budget.release(min(done, self.reserved))
    self.reserved = max(0, self.reserved - done)
    if self.received == self.settled {
      self.messageStart = nil
    } else if !frame.opcode.isControlOpcode || self.messageStart == nil {
      // What is still unsettled is the next message, begun now (its own deadline). A control
      // frame between fragments leaves the interrupted message's deadline as it was.
      self.messageStart = loop.now
    }
  }

  private func armTimer(on loop: any EventLoop) {
    guard self.timer == nil, let start = self.messageStart else { return }
    self.timer = loop.assumeIsolated().scheduleTask(deadline: start + self.timeout) {
      self.timer = nil
      guard let start = self.messageStart else { return }  // nothing unfinished: stay unarmed
      if loop.now >= start + self.timeout {
        self.fail(GRPCErrors.bodyTimedOut("a WebSocket message", after: self.bodyTimeout))
      } else {
        self.armTimer(on: loop)  // a later message: wait for its own deadline
      }
    }
  }

  private func fail(_ error: RPCError) {
    guard !self.failed else { return }
    self.failed = true
    self.framesContext?.fireErrorCaught(error)
  }

  private func stop() {
    self.timer?.cancel()
    self.timer = nil
    self.budget.release(self.reserved)
    self.reserved = 0
    self.framesContext = nil
  }

  /// A frame's size on the wire: the header (RFC 6455 5.2, with the length in its shortest form)
  /// and the payload.
  private static func wireSize(of frame: WebSocketFrame) -> Int {
    let length = frame.length
    let lengthBytes = length > 65_535 ? 8 : (length > 125 ? 2 : 0)
    return 2 + lengthBytes + (frame.maskKey == nil ? 0 : 4) + length
  }

  final class Bytes: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let state: WebSocketMessageGuard

    fileprivate init(guard state: WebSocketMessageGuard) { self.state = state }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      self.state.arrived(Self.unwrapInboundIn(data).readableBytes, on: context.eventLoop)
      context.fireChannelRead(data)
    }

    func handlerRemoved(context: ChannelHandlerContext) { self.state.stop() }
  }

  final class Frames: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    private let state: WebSocketMessageGuard

    fileprivate init(guard state: WebSocketMessageGuard) { self.state = state }

    func handlerAdded(context: ChannelHandlerContext) { self.state.framesContext = context }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      self.state.decoded(Self.unwrapInboundIn(data), on: context.eventLoop)
      context.fireChannelRead(data)
    }

    func handlerRemoved(context: ChannelHandlerContext) { self.state.stop() }
  }
}

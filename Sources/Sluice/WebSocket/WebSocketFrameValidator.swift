internal import GRPCCore
internal import NIOCore
internal import NIOWebSocket

/// Fails a session on what NIOWebSocket's decoder lets through but RFC 6455 forbids from a
/// client: unmasked frames (5.1), RSV bits without a negotiated extension (5.2) and reserved
/// opcodes (5.2). It sits before the fragment aggregator, which hands on unmasked, reassembled
/// frames; the session reads the error as `INVALID_ARGUMENT` and ends with `$end`.
final class WebSocketFrameValidator: ChannelInboundHandler {
  typealias InboundIn = WebSocketFrame
  typealias InboundOut = WebSocketFrame

  private var failed = false

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !self.failed else { return }  // nothing after a violation is trusted
    if let violation = Self.violation(in: Self.unwrapInboundIn(data)) {
      self.failed = true
      context.fireErrorCaught(GRPCErrors.frameViolation(violation))
      return
    }
    context.fireChannelRead(data)
  }

  private static func violation(in frame: WebSocketFrame) -> String? {
    if frame.maskKey == nil { return "unmasked frame: clients must mask every frame (RFC 6455 5.1)" }
    if frame.rsv1 || frame.rsv2 || frame.rsv3 {
      return "RSV bits set, but no extension was negotiated (RFC 6455 5.2)"
    }
    switch frame.opcode {
    case .text, .binary, .continuation, .connectionClose, .ping, .pong: return nil
    default: return "reserved opcode \(frame.opcode) (RFC 6455 5.2)"
    }
  }
}

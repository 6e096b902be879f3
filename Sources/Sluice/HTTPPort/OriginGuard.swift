internal import GRPCCore
internal import NIOCore
internal import NIOHTTP1

/// Refuses a connection's first request, WebSocket handshake or not, when `OriginPolicy` does,
/// with 403, in front of the upgrade handler; and a handshake that `handshakeRefusal` refuses (a
/// multiplexed session without a valid token: 401).
///
/// Written by hand because NIO's typed upgrader, when told not to upgrade, leaves the request
/// unanswered; PROTOCOL.md wants a plain HTTP status at the handshake. The check does not depend on the
/// `Upgrade` header: NIO's upgrader reads it as a list (`Upgrade: websocket, x` upgrades too), so
/// every first request is checked, and `HTTPConnection` checks the ones after it.
final class OriginGuard: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias InboundOut = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let policy: OriginPolicy
  private let handshakeRefusal: (HTTPRequestHead) -> HTTPStatusResponse?
  private var refused = false
  private var checked = false

  init(policy: OriginPolicy, handshakeRefusal: @escaping (HTTPRequestHead) -> HTTPStatusResponse? = { _ in nil }) {
    self.policy = policy
    self.handshakeRefusal = handshakeRefusal
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if self.refused { return }
    // Only a connection's first request can be a handshake: NIO's upgrade handler leaves after
    // it. Everything later passes untouched, unread: that includes the raw WebSocket bytes that
    // the HTTP decoder hands on as it leaves during an upgrade (a client may send its first frame
    // with the handshake), which are not request parts.
    guard !self.checked else {
      context.fireChannelRead(data)
      return
    }
    self.checked = true
    if case .head(let head) = Self.unwrapInboundIn(data),
      let refusal = self.policy.refusal(head.headers) ?? self.handshakeRefusal(head)
    {
      self.refused = true
      refusal.write(from: context).assumeIsolated().whenComplete { _ in
        context.close(promise: nil)
      }
      return
    }
    context.fireChannelRead(data)
  }
}

internal import NIOCore
internal import NIOHTTP2

/// grpc-go's server PING policy (its `keepalive.EnforcementPolicy` defaults), as a value: a PING
/// counts as a strike when it comes sooner than `minimumInterval` after the previous one (or,
/// with no stream open, at all within two hours) and the server has sent no HEADERS or DATA
/// since; the third strike ends the connection with GOAWAY `ENHANCE_YOUR_CALM`.
///
/// So grpc-go's default clients, which PING with most reads while their flow-control window
/// estimate grows (BDP probing), are never struck (every PING follows data), while a client that
/// floods PINGs is stopped after three. swift-nio-http2's own control-frame rate limit would
/// close the former; no library has grpc-go's rule, hence this.
struct PingPolicy {
  /// Pings closer than this count as strikes when nothing was sent between them (grpc-go: 5 min).
  var minimumInterval: TimeAmount = .minutes(5)
  /// Pings with no stream open closer than this count as strikes (grpc-go: 2 h).
  var idleInterval: TimeAmount = .hours(2)
  /// Strikes allowed; one more ends the connection (grpc-go: 2).
  var maximumStrikes = 2

  private var strikes = 0
  private var lastPing: NIODeadline?

  /// A PING arrived at `now`; true when it is one too many.
  mutating func receivedPing(at now: NIODeadline, openStreams: Int, sentSinceLastPing: Bool) -> Bool {
    defer { self.lastPing = now }
    if sentSinceLastPing {
      self.strikes = 0
      return false
    }
    guard let last = self.lastPing else { return false }
    let interval = openStreams > 0 ? self.minimumInterval : self.idleInterval
    guard now - last < interval else { return false }
    self.strikes += 1
    return self.strikes > self.maximumStrikes
  }
}

/// What a connection's streams tell its PING policy: whether HEADERS or DATA went out. Lives on
/// the connection's event loop, shared by its stream handlers.
final class ConnectionActivity {
  var sentSinceLastPing = false
}

/// Applies `PingPolicy` on one connection, after `NIOHTTP2Handler` (which answers the PINGs).
final class PingPolicyHandler: ChannelInboundHandler {
  typealias InboundIn = HTTP2Frame
  typealias InboundOut = HTTP2Frame
  typealias OutboundOut = HTTP2Frame

  let activity = ConnectionActivity()
  private var policy = PingPolicy()
  private var openStreams = 0
  private var lastStreamID = HTTP2StreamID.rootStream

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if case .ping(_, ack: false) = Self.unwrapInboundIn(data).payload {
      let sent = self.activity.sentSinceLastPing
      self.activity.sentSinceLastPing = false
      if self.policy.receivedPing(at: .now(), openStreams: self.openStreams, sentSinceLastPing: sent) {
        let goAway = HTTP2Frame(
          streamID: .rootStream,
          payload: .goAway(
            lastStreamID: self.lastStreamID,
            errorCode: .enhanceYourCalm,
            opaqueData: context.channel.allocator.buffer(string: "too_many_pings")
          )
        )
        context.writeAndFlush(Self.wrapOutboundOut(goAway)).assumeIsolated().whenComplete { _ in
          context.close(promise: nil)
        }
        return
      }
    }
    context.fireChannelRead(data)
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    switch event {
    case let created as NIOHTTP2StreamCreatedEvent:
      self.openStreams += 1
      self.lastStreamID = max(self.lastStreamID, created.streamID)
    case is StreamClosedEvent:
      self.openStreams = max(0, self.openStreams - 1)
    default:
      break
    }
    context.fireUserInboundEventTriggered(event)
  }
}

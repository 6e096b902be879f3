internal import GRPCCore
internal import NIOCore
internal import NIOHTTP1
internal import SluiceCodec
internal import Synchronization

#if canImport(Glibc)
  internal import Glibc
#elseif canImport(Darwin)
  internal import Darwin
#endif

/// Counts a port's connections so that those past `--max-connections` can be refused.
final class ConnectionCounter: Sendable {
  let limit: Int
  private let open = Atomic<Int>(0)

  init(limit: Int) {
    self.limit = limit
  }

  /// Counts `channel` until it closes; false when it is over the limit (it is still counted).
  func admit(_ channel: any Channel) -> Bool {
    let count = self.open.add(1, ordering: .relaxed).newValue
    channel.closeFuture.whenComplete { _ in self.open.subtract(1, ordering: .relaxed) }
    return count <= self.limit
  }
}

/// The whole pipeline of a connection over `--max-connections`: answers its first bytes with 503
/// and a `google.rpc.Status` body, then closes. Existing connections are untouched.
final class RefuseConnection: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private let limit: Int
  private let timeout: TimeAmount
  private var answered = false

  init(limit: Int, timeout: TimeAmount) {
    self.limit = limit
    self.timeout = timeout
  }

  func handlerAdded(context: ChannelHandlerContext) {
    // A refused client that sends nothing is not kept waiting.
    context.closeLater(in: self.timeout)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !self.answered else { return }
    self.answered = true
    let body = JSONValue.object(
      StatusJSON.status(
        code: .resourceExhausted,
        message: "the gateway has its limit of \(self.limit) connections open (--max-connections); retry later"
      )
    ).serializedBytes
    var buffer = context.channel.allocator.buffer(capacity: body.count + 160)
    buffer.writeString(
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n"
        + "Retry-After: 1\r\nConnection: close\r\n\r\n"
    )
    buffer.writeBytes(body)
    context.writeAndFlush(Self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
      context.close(promise: nil)
    }
  }
}

/// Closes a connection whose first request head has not arrived within `timeout` (slowloris
/// clients that trickle a handshake in); removes itself once the head is in.
final class RequestHeadTimeout: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias InboundOut = HTTPServerRequestPart

  private let timeout: TimeAmount
  private var deadline: Scheduled<Void>?

  init(timeout: TimeAmount) {
    self.timeout = timeout
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.deadline = context.closeLater(in: self.timeout)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.deadline?.cancel()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let isHead: Bool
    if case .head = Self.unwrapInboundIn(data) { isHead = true } else { isHead = false }
    context.fireChannelRead(data)
    if isHead {
      self.deadline?.cancel()
      context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
  }
}

/// Closes a connection that has accepted none of the gateway's writes for `timeout`: it stays
/// unwritable (NIO's write buffer over its high-water mark) for that long, so its client reads
/// nothing, or too little to matter. nginx's `send_timeout` in spirit. A stalled reader would
/// otherwise keep its RPC, a concurrency slot and its buffers for ever (an HTTP response has no
/// keepalive ping to notice it).
final class SendTimeout: ChannelInboundHandler {
  typealias InboundIn = NIOAny

  private let timeout: TimeAmount
  private var deadline: Scheduled<Void>?

  init(timeout: TimeAmount) {
    self.timeout = timeout
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable {
      self.deadline?.cancel()
      self.deadline = nil
    } else if self.deadline == nil {
      self.deadline = context.closeLater(in: self.timeout)
    }
    context.fireChannelWritabilityChanged()
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.deadline?.cancel()
    context.fireChannelInactive()
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.deadline?.cancel()
  }
}

extension ChannelHandlerContext {
  /// Closes the channel after `timeout`, unless the returned task is cancelled first.
  @discardableResult
  func closeLater(in timeout: TimeAmount) -> Scheduled<Void> {
    let loopBound = NIOLoopBound(self, eventLoop: self.eventLoop)
    return self.eventLoop.scheduleTask(in: timeout) { loopBound.value.close(promise: nil) }
  }
}

extension TimeAmount {
  /// The same span as a NIO time amount.
  init(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
  }
}

extension NIOBSDSocket.Option {
  /// `TCP_NOTSENT_LOWAT` (Linux 3.12+, macOS): NIO names no constant for it.
  static let tcp_notsent_lowat = NIOBSDSocket.Option(rawValue: TCP_NOTSENT_LOWAT)
}

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

/// Closes a connection whose handshake has not arrived within `timeout`, then leaves the
/// pipeline: on the HTTP port the first request head (slowloris clients that trickle a handshake
/// in), on the gRPC port the first HTTP/2 frame after the connection preface (sockets that never
/// speak).
final class HandshakeTimeout<Part>: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = Part
  typealias InboundOut = Part

  private let timeout: TimeAmount
  private let completes: (Part) -> Bool
  private var deadline: Scheduled<Void>?

  /// - Parameters:
  ///   - timeout: How long the handshake may take.
  ///   - completes: Whether an inbound part completes the handshake.
  init(timeout: TimeAmount, completes: @escaping (Part) -> Bool) {
    self.timeout = timeout
    self.completes = completes
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.deadline = context.closeLater(in: self.timeout)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.deadline?.cancel()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let completed = self.completes(Self.unwrapInboundIn(data))
    context.fireChannelRead(data)
    if completed {
      self.deadline?.cancel()
      context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
  }
}

extension HandshakeTimeout where Part == HTTPServerRequestPart {
  /// The HTTP port's: the first request head must arrive in time.
  convenience init(timeout: TimeAmount) {
    self.init(timeout: timeout) { part in
      if case .head = part { return true }
      return false
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
  /// The same span as a NIO time amount, saturating at about 292 years either way.
  init(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    let (nanoseconds, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    guard !overflow else {
      self = .nanoseconds(seconds < 0 ? .min : .max)
      return
    }
    let (total, overflowAgain) = nanoseconds.addingReportingOverflow(attoseconds / 1_000_000_000)
    self = .nanoseconds(overflowAgain ? (seconds < 0 ? .min : .max) : total)
  }
}

extension NIOBSDSocket.Option {
  /// `TCP_NOTSENT_LOWAT` (Linux 3.12+, macOS): NIO names no constant for it.
  static let tcp_notsent_lowat = NIOBSDSocket.Option(rawValue: TCP_NOTSENT_LOWAT)
}

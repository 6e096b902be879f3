internal import Logging
internal import NIOCore
internal import NIOHTTP2

/// Serves every gRPC call of one HTTP/2 connection from the connection's own pipeline, after
/// `NIOHTTP2Handler` (used without a stream multiplexer): each stream is a `GRPCStream` in a
/// table keyed by stream ID, not a child channel with a pipeline of its own. Measured on the
/// unary benchmark, creating and activating a child channel per call was a quarter of the
/// server's CPU.
///
/// Without the multiplexer, two things it did are done here:
/// - **Receive windows.** swift-nio-http2 reports each window as DATA shrinks it
///   (`NIOHTTP2WindowUpdatedEvent`); the connection's window and each stream's are reopened with
///   WINDOW_UPDATE once down to half the target (the advertised initial window size), as the
///   multiplexer's window manager does. A stream that is not writable holds its window shut.
/// - **Batching.** Frames written while the connection's reads are processed (or inside a timer's
///   callback) are flushed once, at the end of the turn; each stream's batched DATA is written
///   then too.
final class GRPCConnectionHandler: ChannelDuplexHandler {
  typealias InboundIn = HTTP2Frame
  typealias InboundOut = HTTP2Frame
  typealias OutboundIn = HTTP2Frame
  typealias OutboundOut = HTTP2Frame

  let port: GRPCPortContext
  let eventLoop: any EventLoop
  let allocator: ByteBufferAllocator
  /// The receive window every stream and the connection are kept near.
  let targetWindow: Int
  /// Tells the connection's PING policy that HEADERS or DATA went out.
  private let activity: ConnectionActivity

  private var context: ChannelHandlerContext?
  private var streams: [HTTP2StreamID: GRPCStream] = [:]
  /// Streams with batched DATA to write before the next flush.
  private var batching: [GRPCStream] = []
  /// Inside the connection's reads or an engine callback: flush when it is over.
  private var inTurn = false
  private var flushNeeded = false
  private var flushScheduled = false

  init(port: GRPCPortContext, channel: any Channel, targetWindow: Int, activity: ConnectionActivity) {
    self.port = port
    self.eventLoop = channel.eventLoop
    self.allocator = channel.allocator
    self.targetWindow = targetWindow
    self.activity = activity
  }

  // MARK: - For the streams

  /// Writes a frame of one of the connection's streams (flushed at the end of the turn).
  func write(_ frame: HTTP2Frame, promise: EventLoopPromise<Void>? = nil) {
    guard let context = self.context else {
      promise?.fail(ChannelError.ioOnClosedChannel)
      return
    }
    switch frame.payload {
    case .headers, .data: self.activity.sentSinceLastPing = true
    default: break
    }
    context.write(Self.wrapOutboundOut(frame), promise: promise)
  }

  /// `stream` has batched DATA to write before the next flush.
  func writeAtFlush(_ stream: GRPCStream) {
    self.batching.append(stream)
  }

  /// Flushes at the end of the current turn; output from a handler's own timers is flushed on
  /// the loop's next task, once however much it wrote.
  func flushSoon() {
    self.flushNeeded = true
    guard !self.inTurn, !self.flushScheduled else { return }
    self.flushScheduled = true
    self.eventLoop.assumeIsolated().execute {
      self.flushScheduled = false
      self.flushNow()
    }
  }

  /// Runs an engine callback (a deadline, a write completing) as one turn: what it writes is
  /// flushed once, when it returns.
  func inCallback(_ body: () -> Void) {
    let outer = self.inTurn
    self.inTurn = true
    body()
    self.inTurn = outer
    if !outer { self.flushNow() }
  }

  private func flushNow() {
    guard self.flushNeeded, let context = self.context else { return }
    self.flushNeeded = false
    if !self.batching.isEmpty {
      let batching = self.batching
      self.batching.removeAll(keepingCapacity: true)
      for stream in batching { stream.writePending() }
    }
    context.flush()
  }

  // MARK: - Inbound

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.closeAll()
    self.context = nil
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    self.inTurn = true
    let frame = Self.unwrapInboundIn(data)
    switch frame.payload {
    case .headers(let headers):
      if let stream = self.streams[frame.streamID] {
        stream.receivedHeaders(headers.headers, endStream: headers.endStream)
      } else {
        // swift-nio-http2 has checked that this opens a new client stream.
        let stream = GRPCStream(id: frame.streamID, connection: self, port: self.port)
        self.streams[frame.streamID] = stream
        stream.receivedHeaders(headers.headers, endStream: headers.endStream)
      }
    case .data(let data):
      self.streams[frame.streamID]?.receivedData(data)
    case .rstStream:
      self.streams[frame.streamID]?.reset()
    default:
      // SETTINGS, PING, WINDOW_UPDATE, GOAWAY: swift-nio-http2 and the handlers before this
      // one have dealt with them.
      break
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    self.inTurn = false
    self.flushNow()
    context.fireChannelReadComplete()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    switch event {
    case let window as NIOHTTP2WindowUpdatedEvent:
      guard let size = window.inboundWindowSize else { break }
      if window.streamID == .rootStream {
        // The connection's window starts at HTTP/2's 65,535 whatever the settings say.
        if let increment = Self.windowIncrement(window: size, target: max(self.targetWindow, 65_535)) {
          self.write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment)))
          self.flushSoon()
        }
      } else {
        self.streams[window.streamID]?.receiveWindowChanged(size)
      }
    case let closed as StreamClosedEvent:
      self.streams.removeValue(forKey: closed.streamID)?.reset()
    case is ChannelShouldQuiesceEvent:
      self.inCallback {
        for stream in self.streams.values { stream.quiesce() }
      }
    default:
      break
    }
    context.fireUserInboundEventTriggered(event)
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable {
      self.inCallback {
        for stream in self.streams.values { stream.connectionBecameWritable() }
      }
    }
    context.fireChannelWritabilityChanged()
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.closeAll()
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    // A stream error is the stream's: swift-nio-http2 has reset it, and closes it next.
    if let streamError = error as? NIOHTTP2Errors.StreamError {
      self.port.logger.debug("gRPC stream error", metadata: ["sluice.error": "\(streamError.baseError)"])
      self.streams[streamError.streamID]?.reset()
      return
    }
    context.fireErrorCaught(error)
  }

  /// The connection is gone: every open call is cancelled.
  private func closeAll() {
    let streams = self.streams.values
    self.streams.removeAll()
    self.batching.removeAll()
    for stream in streams { stream.reset() }
  }

  // MARK: - Receive windows

  /// How far to reopen a receive window now at `window` bytes: back to `target` once it is down
  /// to half (swift-nio-http2's rule for its stream channels), past a negative window too.
  static func windowIncrement(window: Int, target: Int) -> Int? {
    if window >= target { return nil }
    if window >= 0 {
      let increment = target - window
      return increment >= window ? increment : nil
    }
    return min(-window + target, Int(Int32.max))
  }
}

internal import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP2

/// Serves every gRPC call of one HTTP/2 connection from the connection's own pipeline, after
/// `NIOHTTP2Handler` (used without a stream multiplexer): each stream is a `GRPCStream` in a
/// table keyed by stream ID, not a child channel with a pipeline of its own. Measured on the
/// unary benchmark, creating and activating a child channel per call was a quarter of the
/// server's CPU.
///
/// Without the multiplexer, two things it did are done here:
/// - **Receive windows.** The connection's window is raised to the target (the advertised
///   initial window size) at the start and returned as DATA arrives; a stream's as its call
///   consumes the DATA, each with one WINDOW_UPDATE per half target. A stream that is not
///   writable does not consume, so its window stays shut.
/// - **Batching.** Frames written while the connection's reads are processed (or inside a timer's
///   callback) are flushed once, at the end of the turn; each stream's batched DATA is written
///   then too.
final class GRPCConnectionHandler: ChannelDuplexHandler, GRPCStreamConnection, TurnFlushing {
  typealias InboundIn = HTTP2Frame
  typealias InboundOut = HTTP2Frame
  typealias OutboundIn = HTTP2Frame
  typealias OutboundOut = HTTP2Frame

  let port: RPCEngine
  let eventLoop: any EventLoop
  let allocator: ByteBufferAllocator
  let remoteAddress: SocketAddress?
  /// The receive window every stream and the connection are kept near.
  let targetWindow: Int
  /// Tells the connection's PING policy that HEADERS or DATA went out.
  private let activity: ConnectionActivity

  private var context: ChannelHandlerContext?
  private var streams: [HTTP2StreamID: GRPCStream] = [:]
  /// Request DATA received on the connection and not yet returned to its window.
  private var connectionCredit = 0
  private var raisedWindow = false
  /// Inside the connection's reads or an engine callback: flush when it is over.
  let turn: ConnectionTurn

  init(port: RPCEngine, channel: any Channel, targetWindow: Int, activity: ConnectionActivity) {
    self.port = port
    self.eventLoop = channel.eventLoop
    self.allocator = channel.allocator
    self.remoteAddress = channel.remoteAddress
    self.targetWindow = targetWindow
    self.activity = activity
    self.turn = ConnectionTurn(eventLoop: channel.eventLoop)
  }

  // MARK: - For the streams

  func sendHeaders(_ headers: HPACKHeaders, endStream: Bool, on stream: GRPCStream) {
    self.write(HTTP2Frame(streamID: stream.id, payload: .headers(.init(headers: headers, endStream: endStream))))
  }

  func sendData(_ data: ByteBuffer, counted: Bool, on stream: GRPCStream) {
    let frame = HTTP2Frame(streamID: stream.id, payload: .data(.init(data: .byteBuffer(data))))
    guard counted else {
      self.write(frame)
      return
    }
    // The write completes once swift-nio-http2's flow control and the socket have let it out.
    let bytes = data.readableBytes
    let promise = self.eventLoop.makePromise(of: Void.self)
    promise.futureResult.assumeIsolated().whenComplete { _ in stream.wrote(bytes) }
    self.write(frame, promise: promise)
  }

  func sendReset(_ code: HTTP2ErrorCode, on stream: GRPCStream) {
    self.write(HTTP2Frame(streamID: stream.id, payload: .rstStream(code)))
  }

  func consumed(_ bytes: Int, on stream: GRPCStream) {
    stream.windowCredit += bytes
    guard stream.windowCredit >= self.targetWindow / 2 else { return }
    let increment = stream.windowCredit
    stream.windowCredit = 0
    self.write(HTTP2Frame(streamID: stream.id, payload: .windowUpdate(windowSizeIncrement: increment)))
    self.flushSoon()
  }

  /// Writes a frame (flushed at the end of the turn).
  private func write(_ frame: HTTP2Frame, promise: EventLoopPromise<Void>? = nil) {
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

  func writeAtFlush(_ stream: GRPCStream) {
    self.turn.writeAtFlush(stream)
  }

  func flushSoon() {
    self.turn.flushSoon()
  }

  func inCallback(_ body: () -> Void) {
    self.turn.inCallback(body)
  }

  func flushConnection() {
    self.context?.flush()
  }

  // MARK: - Inbound

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.turn.attach(self)
  }

  /// HTTP/2 starts every connection's window at 65,535 bytes whatever the settings say: one
  /// WINDOW_UPDATE, after the client's first frame (its SETTINGS), takes it to the target.
  private func raiseConnectionWindow() {
    self.raisedWindow = true
    guard self.targetWindow > Self.defaultWindow else { return }
    self.write(
      HTTP2Frame(
        streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: self.targetWindow - Self.defaultWindow))
    )
    self.flushSoon()
  }

  static let defaultWindow = 65_535

  func handlerRemoved(context: ChannelHandlerContext) {
    self.closeAll()
    self.context = nil
    self.turn.detach()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    self.turn.beginRead()
    let frame = Self.unwrapInboundIn(data)
    if !self.raisedWindow { self.raiseConnectionWindow() }
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
      // The connection's window is returned as DATA arrives, whichever stream it is for; a
      // stream's only as its call consumes it.
      let length = data.data.readableBytes + (data.paddingBytes.map { $0 + 1 } ?? 0)
      self.connectionCredit += length
      if self.connectionCredit >= max(self.targetWindow, Self.defaultWindow) / 2 {
        let increment = self.connectionCredit
        self.connectionCredit = 0
        self.write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment)))
      }
      if case .byteBuffer(let bytes) = data.data {
        self.streams[frame.streamID]?.receivedData(bytes, endStream: data.endStream, length: length)
      }
    case .rstStream:
      self.streams[frame.streamID]?.reset()
    default:
      // SETTINGS, PING, WINDOW_UPDATE, GOAWAY: swift-nio-http2 and the handlers before this
      // one have dealt with them.
      break
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    self.turn.endRead(always: false)
    context.fireChannelReadComplete()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    switch event {
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
    self.turn.reset()
    for stream in streams { stream.reset() }
  }
}

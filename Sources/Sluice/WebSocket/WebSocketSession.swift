internal import AsyncAlgorithms
internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHTTP1
internal import NIOWebSocket
internal import ServiceLifecycle
internal import SluiceCodec

/// One WebSocket session carrying one RPC, as PROTOCOL.md describes.
///
/// Three concurrent parts, in one task group:
/// - the reader owns the socket's inbound frames: it answers control frames, turns messages into
///   wire bytes and hands them over through a rendezvous channel (so nothing is read from TCP
///   faster than the service consumes it), and reports how the client side ended;
/// - the RPC runs the call through the bridge and writes responses as they arrive;
/// - watchers for graceful shutdown and keepalive.
/// Whichever ends the session decides the `$end` frame; the others are cancelled.
struct WebSocketSession {
  let bridge: JSONBridge
  let path: String
  let handshake: HTTPRequestHead
  let configuration: GatewayConfiguration
  let metrics: GatewayMetrics
  let logger: Logger

  /// How long the server waits for the client's Close after sending its own.
  static let closeHandshakeTimeout = Duration.seconds(2)

  /// Events the reader hands to the RPC's request stream.
  enum Inbound: Sendable {
    case metadata(Metadata, Duration?)
    case message([UInt8])
  }

  /// How the client's side of the session ended.
  enum ReaderEnd: Sendable {
    /// The client sent Close: it half-closed and still wants the responses.
    case closedByClient
    /// The connection went away without a Close.
    case gone
    /// The client broke the protocol or cancelled; the RPC ends with this status.
    case failed(RPCError)
  }

  enum Event: Sendable {
    case reader(ReaderEnd)
    case rpc(Result<Metadata, RPCError>)
    case shuttingDown
    case peerUnresponsive
    case stopped
    case closeTimedOut
  }

  func run(_ channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>) async {
    do {
      try await channel.executeThenClose { inbound, outbound in
        let writer = WebSocketFrameWriter(
          outbound: outbound,
          allocator: channel.channel.allocator,
          metrics: self.metrics
        )
        await self.serve(inbound: inbound, writer: writer)
      }
    } catch {
      self.logger.debug("WebSocket session ended with an I/O error", metadata: ["sluice.error": "\(error)"])
    }
  }

  private func serve(inbound: NIOAsyncChannelInboundStream<WebSocketFrame>, writer: WebSocketFrameWriter) async {
    let method: SluiceCodec.MethodDescriptor
    var metadata: Metadata
    var timeout: Duration?
    do {
      method = try self.bridge.method(path: self.path)
      (metadata, timeout) = try RequestMetadata.from(headers: self.handshake.headers)
      if let token = WebSocketHandshake.bearerToken(in: self.handshake.headers) {
        metadata.replaceOrAddString("Bearer \(token)", forKey: "authorization")
      } else if let name = self.configuration.bearerCookie, self.configuration.hasOriginAllowList,
        metadata[stringValues: "authorization"].first(where: { _ in true }) == nil,
        let token = WebSocketHandshake.cookie(named: name, in: self.handshake.headers)
      {
        metadata.addString("Bearer \(token)", forKey: "authorization")
      }
    } catch {
      await self.end(writer: writer, result: .failure(error), shuttingDown: false)
      await Self.awaitClientClose(inbound)
      return
    }

    let events = AsyncChannel<Inbound>()
    let lastHeard = Liveness()
    let (metadataAtStart, timeoutAtStart) = (metadata, timeout)

    await withTaskGroup(of: Event.self) { group in
      group.addTask {
        .reader(await self.read(inbound, into: events, method: method, writer: writer, lastHeard: lastHeard))
      }
      group.addTask {
        .rpc(
          await self.call(method, metadata: metadataAtStart, timeout: timeoutAtStart, events: events, writer: writer))
      }
      group.addTask {
        do {
          try await gracefulShutdown()
          return .shuttingDown
        } catch {
          return .stopped
        }
      }
      if let interval = self.configuration.webSocketPingInterval {
        group.addTask { await Self.keepalive(every: interval, lastHeard: lastHeard, writer: writer) }
      }

      // The first event that ends the session decides its `$end`; the events that follow are
      // the other parts winding down after `cancelAll()` and change nothing.
      var outcome: RPCError?
      var clientGone = false
      var shuttingDown = false
      var readerEnded = false
      while let event = await group.next() {
        switch event {
        case .rpc(let result):
          events.finish()
          if !clientGone {
            await self.end(writer: writer, result: outcome.map { .failure($0) } ?? result, shuttingDown: shuttingDown)
          }
          if !clientGone, !shuttingDown, outcome != nil {
            // The client broke the protocol, so nobody reads its socket any more. Stay open a
            // moment before closing TCP: closing with its bytes unread would reset the connection,
            // and the client could lose the `$end` and Close it has not read yet.
            try? await Task.sleep(for: Self.closeHandshakeTimeout)
          }
          if !clientGone, !readerEnded, outcome == nil {
            // The closing handshake: wait (briefly) for the client's Close before closing TCP.
            // Closing at once could reset a connection whose last frames are still unread, and
            // the client would lose the end of the stream.
            group.addTask {
              try? await Task.sleep(for: Self.closeHandshakeTimeout)
              return .closeTimedOut
            }
            while let event = await group.next() {
              // A client still sending after the end (a message too many, say) gets the rest of
              // the wait to read the end: closing now would reset a connection it still writes to,
              // and it could lose the `$end` it has not read yet.
              if case .reader(.failed) = event { continue }
              if case .reader = event { break }
              if case .closeTimedOut = event { break }
            }
          }
          group.cancelAll()
          return
        case .reader(.closedByClient):
          readerEnded = true
          continue
        case _ where clientGone || outcome != nil, .stopped, .closeTimedOut:  // already decided
          continue
        case .reader(.gone), .peerUnresponsive:
          readerEnded = true
          clientGone = true
        case .reader(.failed(let error)):
          readerEnded = true
          outcome = error
        case .shuttingDown:
          shuttingDown = true
          outcome = RPCError(code: .unavailable, message: "Sluice is shutting down; reconnect to another instance")
        }
        group.cancelAll()
      }
    }
  }

  /// The closing handshake when no reader is running: reads (and drops) frames until the client's
  /// Close, for at most `closeHandshakeTimeout`.
  private static func awaitClientClose(_ inbound: NIOAsyncChannelInboundStream<WebSocketFrame>) async {
    await withTaskGroup(of: Void.self) { group in
      group.addTask {
        do {
          for try await frame in inbound where frame.opcode == .connectionClose { return }
        } catch {}
      }
      group.addTask { try? await Task.sleep(for: Self.closeHandshakeTimeout) }
      await group.next()
      group.cancelAll()
    }
  }

  /// Sends `$end` and the Close frame: 1000 for OK, 4000 + the gRPC code otherwise, 1001 when the
  /// gateway is going away.
  private func end(writer: WebSocketFrameWriter, result: Result<Metadata, RPCError>, shuttingDown: Bool) async {
    let frame: [UInt8]
    let closeCode: Int
    let reason: String
    switch result {
    case .success(let trailers):
      frame = StatusJSON.endFrame(code: nil, message: "", trailers: trailers)
      (closeCode, reason) = (1000, "")
    case .failure(let error):
      frame = StatusJSON.endFrame(code: error.code, message: error.message, trailers: error.metadata)
      (closeCode, reason) = (shuttingDown ? 1001 : 4000 + error.code.rawValue, error.message)
    }
    self.logger.debug(
      "WebSocket RPC ended",
      metadata: ["sluice.rpc.method": "\(self.path)", "sluice.websocket.close": "\(closeCode)"]
    )
    try? await writer.send(json: frame)
    try? await writer.close(code: closeCode, reason: reason)
  }
}

internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHPACK
internal import SluiceProtos
internal import SwiftProtobuf
internal import Synchronization

#if canImport(Glibc)
  internal import Glibc
#elseif canImport(Darwin)
  internal import Darwin
#endif

/// The seed tutorial's services on the engine's handler API, for every front end, run on the
/// call's event loop.
enum SeedMethods {
  /// Every seed method, at the pace and `List` count of `services`.
  static func make(_ services: GatewayConfiguration.Services, logger: Logger) -> [RPCMethod] {
    let pace = TimeAmount(services.pace)
    let listCount = services.listCount
    return [
      RPCMethod(path: "/proto.StreamService/List", kind: .serverStreaming) {
        ListHandler(count: listCount, pace: pace)
      },
      RPCMethod(path: "/proto.StreamService/Record", kind: .clientStreaming) {
        RecordHandler(pace: pace, logger: logger)
      },
      RPCMethod(path: "/proto.StreamService/Route", kind: .bidirectionalStreaming) { RouteHandler() },
      .unary("/hello.UserService/SayHi") { (request: Hello_Request, _) -> Hello_Response in
        .with { $0.result = "hi \(request.name)---\(SeedMethods.localTimestamp())" }
      },
      RPCMethod(path: "/DataService/BidirectionalStream", kind: .bidirectionalStreaming) { DataStreamHandler() },
    ]
  }

  /// The last second formatted, and its text: the text changes once a second, and formatting it
  /// anew for every call measured 1 % of a hosted unary call.
  private static let lastTimestamp = Mutex<(second: time_t, text: String)>((-1, ""))

  /// The current local time as `yyyy-MM-dd HH:mm:ss`, the seed's format.
  static func localTimestamp() -> String {
    var now = time(nil)
    if let text = Self.lastTimestamp.withLock({ $0.second == now ? $0.text : nil }) { return text }
    let text = Self.formatted(&now)
    Self.lastTimestamp.withLock { $0 = (now, text) }
    return text
  }

  private static func formatted(_ now: inout time_t) -> String {
    // strftime is the C library's formatter; Foundation's DateFormatter would do the same work
    // with a heavier, lock-guarded object per call.
    var parts = tm()
    localtime_r(&now, &parts)
    return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 32) { buffer in
      guard let base = buffer.baseAddress else { return "" }
      let count = strftime(base, buffer.count, "%Y-%m-%d %H:%M:%S", &parts)
      return String(decoding: UnsafeRawBufferPointer(start: base, count: count), as: UTF8.self)
    }
  }
}

/// `List`: `count` responses counting up from the request's value, `pace` apart; with no pace,
/// as fast as the stream takes them (it waits while the stream is not writable).
private final class ListHandler: RPCHandler {
  private let count: Int
  private let pace: TimeAmount
  private var request: Proto_StreamRequest?
  private var sent = 0
  private var timer: Scheduled<Void>?

  init(count: Int, pace: TimeAmount) {
    self.count = count
    self.pace = pace
  }

  func received(_ message: ByteBuffer, _ call: ServerCall) {
    guard self.request == nil else {
      call.finish(GRPCErrors.expectedOneMessage(got: 2))
      return
    }
    guard let request = call.decode(Proto_StreamRequest.self, from: message) else { return }
    self.request = request
    self.produce(call)
  }

  func receivedEnd(_ call: ServerCall) {
    if self.request == nil { call.finish(GRPCErrors.expectedOneMessage(got: 0)) }
  }

  func becameWritable(_ call: ServerCall) {
    if self.pace == .zero, self.request != nil { self.produce(call) }
  }

  func stopped() {
    self.timer?.cancel()
  }

  private func produce(_ call: ServerCall) {
    guard let request = self.request else { return }
    if self.pace == .zero {
      while self.sent < self.count, call.isWritable { self.sendNext(request, call) }
    } else if self.sent < self.count {
      self.sendNext(request, call)
      if self.sent < self.count {
        self.timer = call.eventLoop.assumeIsolated().scheduleTask(in: self.pace) { self.produce(call) }
        return
      }
    }
    if self.sent == self.count { call.finish() }
  }

  private func sendNext(_ request: Proto_StreamRequest, _ call: ServerCall) {
    let value = request.pt.value &+ Int32(truncatingIfNeeded: self.sent)
    self.sent += 1
    call.send(
      Proto_StreamResponse.with {
        $0.pt.name = request.pt.name
        $0.pt.value = value
      }
    )
  }
}

/// `Record`: reads until the client half-closes, then answers value 1. The seed pauses `pace`
/// after each message it receives; here each message moves the answer's earliest time on by
/// `pace`, which gives the same timing without holding the loop.
private final class RecordHandler: RPCHandler {
  private let pace: TimeAmount
  private let logger: Logger
  private var readyAt = NIODeadline.now()
  private var timer: Scheduled<Void>?

  init(pace: TimeAmount, logger: Logger) {
    self.pace = pace
    self.logger = logger
  }

  func received(_ message: ByteBuffer, _ call: ServerCall) {
    guard let point = call.decode(Proto_StreamRequest.self, from: message) else { return }
    self.logger.debug(
      "Record received",
      metadata: ["sluice.pt.name": "\(point.pt.name)", "sluice.pt.value": "\(point.pt.value)"]
    )
    if self.pace > .zero { self.readyAt = max(self.readyAt, .now()) + self.pace }
  }

  func receivedEnd(_ call: ServerCall) {
    let answer = {
      call.send(
        Proto_StreamResponse.with {
          $0.pt.name = "gRPC Stream Server: Record"
          $0.pt.value = 1
        }
      )
      call.finish()
    }
    if self.readyAt > .now() {
      self.timer = call.eventLoop.assumeIsolated().scheduleTask(deadline: self.readyAt, answer)
    } else {
      answer()
    }
  }

  func stopped() {
    self.timer?.cancel()
  }
}

/// `Route`: every request is answered, as it arrives, with a running count from 0.
private final class RouteHandler: RPCHandler {
  private var count: Int32 = 0

  func received(_ message: ByteBuffer, _ call: ServerCall) {
    guard call.decode(Proto_StreamRequest.self, from: message) != nil else { return }
    let value = self.count
    self.count &+= 1
    call.send(
      Proto_StreamResponse.with {
        $0.pt.name = "gRPC Stream Server: Route"
        $0.pt.value = value
      }
    )
  }

  func receivedEnd(_ call: ServerCall) {
    call.finish()
  }
}

/// `DataService/BidirectionalStream`: every `StreamRequest{data}` is answered with
/// `StreamResponse{result: "processed: <data>"}`.
private final class DataStreamHandler: RPCHandler {
  func received(_ message: ByteBuffer, _ call: ServerCall) {
    guard let request = call.decode(StreamRequest.self, from: message) else { return }
    call.send(StreamResponse.with { $0.result = "processed: \(request.data)" })
  }

  func receivedEnd(_ call: ServerCall) {
    call.finish()
  }
}

import GRPCCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHPACK
import Testing

@testable import Sluice

/// The one call lifecycle every front end keeps, without sockets: an engine with a limiter of one
/// slot, a responder that records nothing, and an embedded event loop whose clock the test moves.
@Suite("The call lifecycle, the same for every front end")
struct CallLifecycleTests {
  final class Responder: CallResponder {
    let eventLoop: any EventLoop
    init(_ loop: any EventLoop) { self.eventLoop = loop }
    var isWritable: Bool { true }
    var messageCompressed: Bool { false }
    var outputTurn: ConnectionTurn? { nil }
    func send(serialized message: [UInt8], compressed: Bool) {}
    func finish(_ error: RPCError?, trailers: HPACKHeaders) {}
    func sendHeaders(_ metadata: HPACKHeaders) {}
    func holdRequests(_ hold: Bool) {}
  }

  /// Starts with `x-started: 1`.
  final class Handler: RPCHandler {
    func start(_ call: ServerCall) -> HPACKHeaders? { ["x-started": "1"] }
    func received(_ message: ByteBuffer, _ call: ServerCall) {}
    func receivedEnd(_ call: ServerCall) {}
  }

  static func engine(echo: Bool = false) -> RPCEngine {
    let method = RPCMethod(path: "/test.Service/Call", kind: .unary) { Handler() }
    return RPCEngine(
      router: RPCRouter([method]),
      limiter: RPCLimiter(limit: 1),
      monitor: RPCMonitor(metrics: GatewayMetrics(), logger: Logger(label: "test")),
      authenticator: nil,
      maximumMessageBytes: 1 << 20,
      echoMetadata: echo,
      logger: Logger(label: "test")
    )
  }

  static func begin(
    _ lifecycle: inout CallLifecycle,
    _ engine: RPCEngine,
    path: String = "/test.Service/Call",
    metadata: HPACKHeaders = [:],
    timeout: Duration? = nil,
    loop: EmbeddedEventLoop,
    expired: @escaping () -> Void = {}
  ) -> RPCError? {
    lifecycle.begin(
      engine, path: path, metadata: metadata, timeout: timeout,
      origin: CallOrigin(peerAddress: nil, source: .metadata), transport: .grpc,
      responder: Responder(loop), expired: expired)
  }

  @Test("A refused call holds nothing: no handler, no slot")
  func refusal() {
    let (engine, loop) = (Self.engine(), EmbeddedEventLoop())
    var refused = CallLifecycle()
    let error = Self.begin(&refused, engine, path: "/test.Service/Missing", loop: loop)
    #expect(error?.code == .unimplemented)
    #expect(!refused.isRunning)
    var next = CallLifecycle()
    #expect(Self.begin(&next, engine, loop: loop) == nil)
    #expect(next.isRunning)
  }

  @Test("The admission is released exactly once, however many ways the call ends")
  func releaseOnce() {
    let (engine, loop) = (Self.engine(), EmbeddedEventLoop())
    var first = CallLifecycle()
    #expect(Self.begin(&first, engine, loop: loop) == nil)
    var second = CallLifecycle()
    #expect(Self.begin(&second, engine, loop: loop)?.code == .resourceExhausted)
    #expect(first.end(engine, code: "ok") != nil)
    // A second end (a reset after the trailers) releases nothing and has no handler to stop.
    #expect(first.end(engine, code: "cancelled") == nil)
    var third = CallLifecycle()
    var fourth = CallLifecycle()
    #expect(Self.begin(&third, engine, loop: loop) == nil)
    // One slot again, not two: the limit of one still holds.
    #expect(Self.begin(&fourth, engine, loop: loop)?.code == .resourceExhausted)
  }

  @Test("Calls without a token (health probes) fill a pool of their own, and are told which")
  func probePool() {
    let loop = EmbeddedEventLoop()
    let probe = RPCMethod(path: "/grpc.health.v1.Health/Check", kind: .unary, authenticates: false) { Handler() }
    let engine = RPCEngine(
      router: RPCRouter([probe]),
      limiter: RPCLimiter(limit: 100),
      monitor: RPCMonitor(metrics: GatewayMetrics(), logger: Logger(label: "test")),
      authenticator: BearerAuthenticator(tokens: ["secret"]),
      maximumMessageBytes: 1 << 20,
      echoMetadata: false,
      logger: Logger(label: "test")
    )
    var calls = (0..<17).map { _ in CallLifecycle() }
    let refusals = calls.indices.map { Self.begin(&calls[$0], engine, path: probe.path, loop: loop) }
    #expect(refusals.prefix(16).allSatisfy { $0 == nil })
    #expect(refusals[16]?.code == .resourceExhausted)
    #expect(refusals[16]?.message.contains("16 calls without a token") == true)
    // A token holder still gets one of the 100 slots.
    var holder = CallLifecycle()
    #expect(
      Self.begin(&holder, engine, path: probe.path, metadata: ["authorization": "Bearer secret"], loop: loop) == nil)
  }

  @Test("The deadline fires while the call runs, and not after it ended")
  func deadline() {
    let (engine, loop) = (Self.engine(), EmbeddedEventLoop())
    var fired = 0
    var running = CallLifecycle()
    #expect(Self.begin(&running, engine, timeout: .seconds(5), loop: loop, expired: { fired += 1 }) == nil)
    loop.advanceTime(by: .seconds(4))
    #expect(fired == 0)
    loop.advanceTime(by: .seconds(1))
    #expect(fired == 1)
    running.end(engine, code: "deadlineExceeded")

    var ended = CallLifecycle()
    #expect(Self.begin(&ended, engine, timeout: .seconds(5), loop: loop, expired: { fired += 1 }) == nil)
    ended.end(engine, code: "ok")
    loop.advanceTime(by: .seconds(10))
    #expect(fired == 1)
  }

  @Test("The handler's start metadata, with the request echoed under --echo-metadata")
  func startMetadata() throws {
    let loop = EmbeddedEventLoop()
    for echo in [false, true] {
      let engine = Self.engine(echo: echo)
      var lifecycle = CallLifecycle()
      #expect(Self.begin(&lifecycle, engine, metadata: ["x-user": "ada"], loop: loop) == nil)
      let handler = try #require(lifecycle.handler)
      let call = try #require(lifecycle.call)
      let headers = CallLifecycle.start(handler, call, engine: engine)
      #expect(headers?.first(name: "x-started") == "1")
      #expect(headers?.first(name: "echo-x-user") == (echo ? "ada" : nil))
      lifecycle.end(engine, code: "ok")
    }
  }
}

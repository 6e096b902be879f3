import GRPCCore
import NIOCore
import NIOHPACK
import Testing

@testable import Sluice

@Suite("The native port's per-stream state, as a value")
struct GRPCServerStreamStateTests {
  static let request: HPACKHeaders = [
    ":method": "POST", ":scheme": "http", ":path": "/proto.StreamService/Route",
    "content-type": "application/grpc", "te": "trailers",
  ]

  /// `messages` as gRPC's length-prefixed framing, in one buffer.
  static func framed(_ messages: [[UInt8]], compressed: Bool = false) -> ByteBuffer {
    var buffer = ByteBuffer()
    for message in messages {
      buffer.writeInteger(UInt8(compressed ? 1 : 0))
      buffer.writeInteger(UInt32(message.count))
      buffer.writeBytes(message)
    }
    return buffer
  }

  static func started(maximumMessageBytes: Int = 1 << 20) -> GRPCServerStreamState {
    var state = GRPCServerStreamState(maximumMessageBytes: maximumMessageBytes)
    guard case .start = state.receivedHeaders(Self.request, endStream: false) else {
      Issue.record("a valid request was refused")
      return state
    }
    return state
  }

  @Test("A valid request starts the call with its path and timeout")
  func start() {
    var state = GRPCServerStreamState(maximumMessageBytes: 100)
    var headers = Self.request
    headers.add(name: "grpc-timeout", value: "250m")
    guard case .start(let head) = state.receivedHeaders(headers, endStream: false) else {
      Issue.record("refused")
      return
    }
    #expect(head.path == "/proto.StreamService/Route")
    #expect(head.timeout == .milliseconds(250))
    #expect(state.phase == .open(responseStarted: false, requestEnded: false))
  }

  @Test(
    "Requests gRPC does not allow get a trailers-only answer with grpc-go's status and code",
    arguments: [
      (":method", "GET", "405", RPCError.Code.internalError),
      ("content-type", "text/plain", "415", .invalidArgument),
      ("content-type", "application/grpcx", "415", .invalidArgument),
      ("grpc-timeout", "-1S", "200", .invalidArgument),
      ("grpc-timeout", "123456789S", "200", .invalidArgument),
      ("grpc-encoding", "br", "200", .unimplemented),
    ]
  )
  func refusals(name: String, value: String, httpStatus: String, code: RPCError.Code) {
    var state = GRPCServerStreamState(maximumMessageBytes: 100)
    var headers = Self.request
    headers.replaceOrAdd(name: name, value: value)
    guard case .refuse(let ending, let error) = state.receivedHeaders(headers, endStream: true) else {
      Issue.record("\(name): \(value) was accepted")
      return
    }
    let response = ending.headers
    #expect(ending.trailersOnly)
    #expect(!ending.resetAfter)  // the request had ended with its headers
    #expect(response.first(name: ":status") == httpStatus)
    #expect(response.first?.name == ":status")  // pseudo-headers lead the block
    #expect(response.first(name: "grpc-status") == String(describing: Status.Code(code).rawValue))
    #expect(error.code == code)
    #expect(state.phase == .closed)
    if name == "grpc-encoding" { #expect(response.first(name: "grpc-accept-encoding") == "identity,gzip") }
  }

  @Test("A refused request the client is still sending is reset after the answer")
  func refusedWhileSending() {
    var state = GRPCServerStreamState(maximumMessageBytes: 100)
    var headers = Self.request
    headers.replaceOrAdd(name: ":method", value: "PUT")
    guard case .refuse(let ending, _) = state.receivedHeaders(headers, endStream: false) else {
      Issue.record("PUT was accepted")
      return
    }
    #expect(ending.resetAfter)
  }

  @Test("A second HEADERS (trailers) ends the request; without END_STREAM it is nothing")
  func requestTrailers() {
    var state = Self.started()
    guard case .trailers(.ignore) = state.receivedHeaders(["x-trailer": "1"], endStream: false) else {
      Issue.record("trailers without END_STREAM did something")
      return
    }
    guard case .trailers(.deliver([], ended: true)) = state.receivedHeaders(["x-trailer": "1"], endStream: true) else {
      Issue.record("trailers with END_STREAM did not end the request")
      return
    }
    #expect(state.phase == .open(responseStarted: false, requestEnded: true))
  }

  @Test("Content types: application/grpc with +proto or parameters")
  func contentTypes() {
    for good in ["application/grpc", "application/grpc+proto", "application/grpc;charset=utf-8"] {
      #expect(GRPCServerStreamState.isGRPCContentType(good), "\(good)")
    }
    for bad in ["", "application/json", "application/grpc-web", "application/grpcx"] {
      #expect(!GRPCServerStreamState.isGRPCContentType(bad), "\(bad)")
    }
  }

  @Test("Messages split anyhow over DATA frames come out whole and in order")
  func splitMessages() {
    var state = Self.started()
    let bytes = Self.framed([[1, 2, 3], [], Array(repeating: 7, count: 300)])
    var delivered: [[UInt8]] = []
    // One byte per frame: every split point, including inside the 5-byte prefix.
    for index in 0..<bytes.readableBytes {
      let frame = bytes.getSlice(at: index, length: 1)!
      guard case .deliver(let messages, let ended) = state.receivedData(frame, endStream: false) else {
        Issue.record("frame \(index) failed")
        return
      }
      #expect(!ended)
      delivered += messages.map { Array($0.bytes.readableBytesView) }
    }
    #expect(delivered == [[1, 2, 3], [], Array(repeating: 7, count: 300)])
    guard case .deliver([], ended: true) = state.receivedData(ByteBuffer(), endStream: true) else {
      Issue.record("the end was not delivered")
      return
    }
    #expect(state.phase == .open(responseStarted: false, requestEnded: true))
  }

  @Test("A message announced over the limit fails the call before its bytes arrive")
  func tooLarge() {
    var state = Self.started(maximumMessageBytes: 10)
    var prefix = ByteBuffer()
    prefix.writeInteger(UInt8(0))
    prefix.writeInteger(UInt32(11))
    guard case .fail(let error) = state.receivedData(prefix, endStream: false) else {
      Issue.record("an 11-byte message passed a 10-byte limit")
      return
    }
    #expect(error.code == .resourceExhausted)
  }

  @Test("A compressed message without grpc-encoding, or a request ending mid-message, is an error")
  func malformedBodies() {
    var compressed = Self.started()
    guard case .fail(let error) = compressed.receivedData(Self.framed([[1]], compressed: true), endStream: false)
    else {
      Issue.record("a compressed message passed")
      return
    }
    #expect(error.code == .internalError)

    var cut = Self.started()
    var partial = Self.framed([[1, 2, 3]])
    partial.moveWriterIndex(to: partial.writerIndex - 1)
    guard case .fail = cut.receivedData(partial, endStream: true) else {
      Issue.record("a request ending inside a message passed")
      return
    }
  }

  @Test("gzip-encoded messages arrive inflated and marked compressed; plain ones beside them unmarked")
  func gzipRequest() throws {
    var state = GRPCServerStreamState(maximumMessageBytes: 1 << 20)
    var headers = Self.request
    headers.add(name: "grpc-encoding", value: "gzip")
    guard case .start(let head) = state.receivedHeaders(headers, endStream: false), head.gzip else {
      Issue.record("a gzip request was refused")
      return
    }
    let message = Array("hello, compressed world".utf8)
    var gzipped = try #require(GzipMessage.deflate(message, allocator: ByteBufferAllocator()))
    var frame = ByteBuffer()
    frame.writeInteger(UInt8(1))
    frame.writeInteger(UInt32(gzipped.readableBytes))
    frame.writeBuffer(&gzipped)
    frame.writeImmutableBuffer(Self.framed([[9]]))
    guard case .deliver(let messages, ended: false) = state.receivedData(frame, endStream: false) else {
      Issue.record("the messages were not delivered")
      return
    }
    #expect(messages.map { Array($0.bytes.readableBytesView) } == [message, [9]])
    #expect(messages.map(\.compressed) == [true, false])
  }

  @Test("A call that compresses declares grpc-encoding: gzip; the handler's trailers follow the status")
  func gzipResponseAndTrailers() {
    var state = Self.started()
    state.compressesResponses = true
    #expect(state.sendingMessage().headers?.first(name: "grpc-encoding") == "gzip")
    let ending = state.finishing(nil, trailers: ["x-grpc-test-echo-trailing-bin": "q6ur"])
    #expect(ending?.headers.map(\.name) == ["grpc-status", "x-grpc-test-echo-trailing-bin"])

    var plain = Self.started()
    #expect(plain.sendingMessage().headers?.contains(name: "grpc-encoding") == false)
    #expect(GRPCServerStreamState.acceptsGzip(["grpc-accept-encoding": "identity, deflate ,gzip"]))
    #expect(!GRPCServerStreamState.acceptsGzip(["grpc-accept-encoding": "identity,gzipx"]))
    #expect(!GRPCServerStreamState.acceptsGzip(Self.request))
  }

  @Test("The first message sends the response headers once; trailers end the call once")
  func response() {
    var state = Self.started()
    let first = state.sendingMessage()
    #expect(first.headers?.first(name: ":status") == "200")
    let second = state.sendingMessage()
    #expect(second.headers == nil)
    #expect(second.open)
    let ending = state.finishing(nil)
    #expect(ending?.headers.first(name: "grpc-status") == "0")
    #expect(ending?.headers.first(name: ":status") == nil)
    #expect(ending?.trailersOnly == false)
    #expect(ending?.resetAfter == true)  // the client had not half-closed
    #expect(state.finishing(nil) == nil)
    let late = state.sendingMessage()
    #expect(!late.open)
  }

  @Test("An error before any message is trailers-only, its message percent-encoded, its details passed on")
  func trailersOnly() {
    var state = Self.started()
    _ = state.receivedData(ByteBuffer(), endStream: true)
    var metadata = Metadata()
    metadata.addBinary([1, 2, 3], forKey: "grpc-status-details-bin")
    metadata.addString("v", forKey: "custom")
    let ending = state.finishing(RPCError(code: .notFound, message: "no 100% ü", metadata: metadata))
    #expect(ending?.trailersOnly == true)
    #expect(ending?.resetAfter == false)
    #expect(ending?.headers.first(name: ":status") == "200")
    #expect(ending?.headers.first(name: "grpc-status") == "5")
    #expect(ending?.headers.first(name: "grpc-message") == "no 100%25 %C3%BC")
    #expect(ending?.headers.first(name: "grpc-status-details-bin") == "AQID")
    #expect(ending?.headers.first(name: "custom") == "v")
  }

  @Test("A reset of an open call stops its handler; of a finished one, nothing")
  func reset() {
    var open = Self.started()
    let wasOpen = open.streamClosed()
    #expect(wasOpen)
    #expect(!open.isOpen)
    var finished = Self.started()
    _ = finished.finishing(nil)
    let finishedWasOpen = finished.streamClosed()
    #expect(!finishedWasOpen)
    guard case .ignore = finished.receivedData(Self.framed([[1]]), endStream: false) else {
      Issue.record("data after the end reached the handler")
      return
    }
  }

  @Test("A proxy's stream hands on whole messages still framed, however the frames split them")
  func passesFramed() {
    var state = Self.started()
    state.passesFramed = true
    let messages: [[UInt8]] = [[1, 2, 3], [], Array(repeating: 7, count: 40), [9]]
    let all = Self.framed(messages)
    // Cut after the first message and 2 bytes into the third: every whole one comes out, in
    // order, with its prefix; the rest waits for the next DATA.
    let cut = 5 + 3 + 5 + 2
    var delivered = ByteBuffer()
    var count = 0
    for (piece, end) in [
      (all.getSlice(at: 0, length: cut), false), (all.getSlice(at: cut, length: all.readableBytes - cut), true),
    ] {
      guard let piece, case .deliverFramed(var bytes, let n, let ended) = state.receivedData(piece, endStream: end)
      else {
        Issue.record("not handed on framed")
        return
      }
      #expect(ended == end)
      delivered.writeBuffer(&bytes)
      count += n
    }
    #expect(count == messages.count)
    #expect(delivered == all)
    #expect(state.requestEnded)
  }

  @Test(
    "Framed, a message over the limit, a compressed one or one cut short still ends the call",
    arguments: ["too large", "compressed", "cut short"]
  )
  func framedRefusals(kind: String) {
    var state = Self.started(maximumMessageBytes: 10)
    state.passesFramed = true
    let data: ByteBuffer =
      switch kind {
      case "too large": Self.framed([[1], Array(repeating: 0, count: 11)])
      case "compressed": Self.framed([[1]], compressed: true)
      default: Self.framed([[1, 2, 3]]).getSlice(at: 0, length: 6) ?? ByteBuffer()
      }
    guard case .fail(let error) = state.receivedData(data, endStream: kind == "cut short") else {
      Issue.record("\(kind) was handed on")
      return
    }
    let expected: RPCError.Code = kind == "too large" ? .resourceExhausted : .internalError
    #expect(error.code == expected)
  }
}

internal import Foundation
internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import SluiceProtos
internal import SwiftProtobuf

/// `grpc.testing.TestService`, the service of gRPC's cross-language interop tests
/// (doc/interop-test-descriptions.md, "Server"), on the engine's handler API: hosted on the
/// native port with `--interop-service`, so that gRPC's interop clients can check Sluice.
///
/// Every method echoes `x-grpc-test-echo-initial` in the response headers and
/// `x-grpc-test-echo-trailing-bin` in the trailers. Sizes come from the client, so a negative
/// size is `INVALID_ARGUMENT` and one over `--max-message-bytes` is `RESOURCE_EXHAUSTED`, decided
/// before anything is allocated. `UnimplementedCall` and `grpc.testing.UnimplementedService`
/// are left out on purpose: calling them is how clients test `UNIMPLEMENTED`.
enum InteropMethods {
  static let service = "grpc.testing.TestService"

  static func make(maximumMessageBytes limit: Int) -> [RPCMethod] {
    [
      RPCMethod(path: "/\(Self.service)/EmptyCall", kind: .unary) {
        InteropUnaryHandler { (_: Grpc_Testing_Empty, _) throws(RPCError) in (Grpc_Testing_Empty(), false) }
      },
      RPCMethod(path: "/\(Self.service)/UnaryCall", kind: .unary, compressesResponses: true) {
        InteropUnaryHandler { (request: Grpc_Testing_SimpleRequest, call) throws(RPCError) in
          try Self.unaryCall(request, call, limit: limit)
        }
      },
      RPCMethod(path: "/\(Self.service)/StreamingOutputCall", kind: .serverStreaming, compressesResponses: true) {
        ResponseStreamHandler(mode: .oneRequest, limit: limit)
      },
      RPCMethod(path: "/\(Self.service)/StreamingInputCall", kind: .clientStreaming) {
        StreamingInputHandler()
      },
      RPCMethod(path: "/\(Self.service)/FullDuplexCall", kind: .bidirectionalStreaming, compressesResponses: true) {
        ResponseStreamHandler(mode: .fullDuplex, limit: limit)
      },
      RPCMethod(path: "/\(Self.service)/HalfDuplexCall", kind: .bidirectionalStreaming, compressesResponses: true) {
        ResponseStreamHandler(mode: .halfDuplex, limit: limit)
      },
    ]
  }

  /// `UnaryCall`: checks `expect_compressed`, echoes `response_status`, and answers a payload of
  /// `response_size` zero bytes, compressed when `response_compressed` asks.
  static func unaryCall(
    _ request: Grpc_Testing_SimpleRequest,
    _ call: ServerCall,
    limit: Int
  ) throws(RPCError) -> (Grpc_Testing_SimpleResponse, compressed: Bool) {
    try Self.checkCompressed(expected: request.expectCompressed.value, call)
    if let error = Self.echoedStatus(request.hasResponseStatus ? request.responseStatus : nil) { throw error }
    try Self.checkPayloadType(request.responseType)
    let payload = try Self.payload(size: request.responseSize, limit: limit)
    return (.with { $0.payload = payload }, request.responseCompressed.value)
  }

  /// The CompressedRequest feature: a message that says it must have arrived compressed and did
  /// not is `INVALID_ARGUMENT`.
  static func checkCompressed(expected: Bool, _ call: ServerCall) throws(RPCError) {
    if expected, !call.messageCompressed {
      throw RPCError(code: .invalidArgument, message: "expected a compressed request message")
    }
  }

  /// A payload of `size` zero bytes.
  static func payload(size: Int32, limit: Int) throws(RPCError) -> Grpc_Testing_Payload {
    guard size >= 0 else {
      throw RPCError(code: .invalidArgument, message: "payload size \(size) is negative")
    }
    // The response carries a few bytes of framing beyond the body; the engine checks the rest.
    guard Int(size) <= limit else { throw GRPCErrors.messageTooLarge(Int(size), limit: limit, received: false) }
    return .with { $0.body = Data(count: Int(size)) }
  }

  static func checkPayloadType(_ type: Grpc_Testing_PayloadType) throws(RPCError) {
    guard type == .compressable else {
      throw RPCError(code: .invalidArgument, message: "payload type \(type.rawValue) is not supported")
    }
  }

  /// The error a request's `response_status` asks for; nil for none or OK. A code gRPC does not
  /// define is UNKNOWN, as gRPC's clients read it.
  static func echoedStatus(_ status: Grpc_Testing_EchoStatus?) -> RPCError? {
    guard let status, status.code != 0 else { return nil }
    let code = Status.Code(rawValue: Int(status.code)).flatMap { RPCError.Code($0) } ?? .unknown
    return RPCError(code: code, message: status.message)
  }

  /// The request's `x-grpc-test-echo-initial`, for the response headers.
  static func echoedInitial(_ call: ServerCall) -> HPACKHeaders {
    Self.echoed("x-grpc-test-echo-initial", call)
  }

  /// The request's `x-grpc-test-echo-trailing-bin`, for the trailers.
  static func echoedTrailing(_ call: ServerCall) -> HPACKHeaders {
    Self.echoed("x-grpc-test-echo-trailing-bin", call)
  }

  private static func echoed(_ name: String, _ call: ServerCall) -> HPACKHeaders {
    var headers: HPACKHeaders = [:]
    for value in call.metadata[name] { headers.add(name: name, value: value) }
    return headers
  }
}

/// `EmptyCall` and `UnaryCall`: one request, one response (or the call's error), with the echoed
/// metadata.
private final class InteropUnaryHandler<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message>: RPCHandler {
  typealias Body = (Input, ServerCall) throws(RPCError) -> (Output, compressed: Bool)
  private let body: Body
  /// The answer, worked out when the request arrived (whether it came compressed is known only
  /// then) and sent when the request ends.
  private var answer: Result<(Output, compressed: Bool), RPCError>?

  init(_ body: @escaping Body) {
    self.body = body
  }

  func start(_ call: ServerCall) -> HPACKHeaders? {
    InteropMethods.echoedInitial(call)
  }

  func received(_ message: ByteBuffer, _ call: ServerCall) {
    guard self.answer == nil else {
      call.finish(GRPCErrors.expectedOneMessage(got: 2))
      return
    }
    guard let request = call.decode(Input.self, from: message) else { return }
    do {
      self.answer = .success(try self.body(request, call))
    } catch {
      self.answer = .failure(error)
    }
  }

  func receivedEnd(_ call: ServerCall) {
    switch self.answer {
    case nil:
      call.finish(GRPCErrors.expectedOneMessage(got: 0))
    case .success(let (response, compressed)):
      call.send(response, compressed: compressed)
      call.finish(trailers: InteropMethods.echoedTrailing(call))
    case .failure(let error):
      call.finish(error, trailers: InteropMethods.echoedTrailing(call))
    }
  }
}

/// `StreamingInputCall`: adds up the request payloads' sizes and answers the sum at the end.
private final class StreamingInputHandler: RPCHandler {
  private var total = 0

  func start(_ call: ServerCall) -> HPACKHeaders? {
    InteropMethods.echoedInitial(call)
  }

  func received(_ message: ByteBuffer, _ call: ServerCall) {
    guard let request = call.decode(Grpc_Testing_StreamingInputCallRequest.self, from: message) else { return }
    do throws(RPCError) {
      try InteropMethods.checkCompressed(expected: request.expectCompressed.value, call)
    } catch {
      call.finish(error)
      return
    }
    self.total = self.total.addingReportingOverflow(request.payload.body.count).partialValue
  }

  func receivedEnd(_ call: ServerCall) {
    call.send(
      Grpc_Testing_StreamingInputCallResponse.with { $0.aggregatedPayloadSize = Int32(clamping: self.total) }
    )
    call.finish(trailers: InteropMethods.echoedTrailing(call))
  }
}

/// `StreamingOutputCall`, `FullDuplexCall` and `HalfDuplexCall`: one response per
/// `ResponseParameters`, in order, each after its `interval_us`, while the stream is writable;
/// a `response_status` ends the call with it once the responses before it are out.
private final class ResponseStreamHandler: RPCHandler {
  enum Mode {
    /// StreamingOutputCall: one request.
    case oneRequest
    /// FullDuplexCall: each request's responses as it arrives.
    case fullDuplex
    /// HalfDuplexCall: every request's responses once the client half-closed.
    case halfDuplex
  }

  private enum Step {
    case respond(Grpc_Testing_ResponseParameters)
    case end(RPCError?)
  }

  private let mode: Mode
  private let limit: Int
  private var steps = CircularBuffer<Step>()
  private var requests = 0
  /// No more requests are taken: the request ended, or a status to end with is queued.
  private var closed = false
  private var timer: Scheduled<Void>?
  /// The first step's `interval_us` has passed.
  private var waited = false

  init(mode: Mode, limit: Int) {
    self.mode = mode
    self.limit = limit
  }

  func start(_ call: ServerCall) -> HPACKHeaders? {
    InteropMethods.echoedInitial(call)
  }

  func received(_ message: ByteBuffer, _ call: ServerCall) {
    guard !self.closed else { return }
    self.requests += 1
    if self.mode == .oneRequest, self.requests > 1 {
      call.finish(GRPCErrors.expectedOneMessage(got: self.requests))
      return
    }
    guard let request = call.decode(Grpc_Testing_StreamingOutputCallRequest.self, from: message) else { return }
    do throws(RPCError) {
      try InteropMethods.checkPayloadType(request.responseType)
    } catch {
      self.steps.append(.end(error))
      self.closed = true
      self.run(call)
      return
    }
    let status = InteropMethods.echoedStatus(request.hasResponseStatus ? request.responseStatus : nil)
    if status == nil { self.steps.append(contentsOf: request.responseParameters.map { .respond($0) }) }
    if status != nil || self.mode == .oneRequest {
      self.steps.append(.end(status))
      self.closed = true
    }
    if self.mode != .halfDuplex { self.run(call) }
  }

  func receivedEnd(_ call: ServerCall) {
    if self.mode == .oneRequest, self.requests == 0 {
      call.finish(GRPCErrors.expectedOneMessage(got: 0))
      return
    }
    if !self.closed {
      self.steps.append(.end(nil))
      self.closed = true
    }
    self.run(call)
  }

  func becameWritable(_ call: ServerCall) {
    if self.timer == nil, self.mode != .halfDuplex || self.closed { self.run(call) }
  }

  func stopped() {
    self.timer?.cancel()
    self.timer = nil
  }

  /// Takes steps until one waits: for its interval, or for the stream to take more output.
  private func run(_ call: ServerCall) {
    guard self.timer == nil else { return }
    while let step = self.steps.first {
      switch step {
      case .end(let error):
        self.steps.removeAll()
        call.finish(error, trailers: InteropMethods.echoedTrailing(call))
        return
      case .respond(let parameters):
        if parameters.intervalUs > 0, !self.waited {
          self.timer = call.eventLoop.assumeIsolated().scheduleTask(
            in: .microseconds(Int64(parameters.intervalUs))
          ) {
            self.timer = nil
            self.waited = true
            self.run(call)
          }
          return
        }
        guard call.isWritable else { return }
        self.steps.removeFirst()
        self.waited = false
        do throws(RPCError) {
          let payload = try InteropMethods.payload(size: parameters.size, limit: self.limit)
          call.send(
            Grpc_Testing_StreamingOutputCallResponse.with { $0.payload = payload },
            compressed: parameters.compressed.value
          )
        } catch {
          self.steps.removeAll()
          call.finish(error, trailers: InteropMethods.echoedTrailing(call))
          return
        }
      }
    }
  }
}

internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import SwiftProtobuf

/// One call's logic in a hosted method, driven by the engine on the call's event loop: no task,
/// no lock, no hop. Every method is called on `call.eventLoop`; a handler that schedules work of
/// its own (a timer) schedules it there.
///
/// The engine calls `received` for each request message, `receivedEnd` once the client
/// half-closes, `becameWritable` when a stream that could not take more output can again, and
/// `stopped` when the call ended without the handler (the client cancelled, the deadline
/// passed, a graceful shutdown cut a stream short); after `stopped` or the handler's own
/// `finish` nothing more is called.
protocol RPCHandler: AnyObject {
  /// Metadata for the response headers, asked once before anything else (the headers go out
  /// when the call is routed; some clients wait for them before they send).
  func initialMetadata(_ call: ServerCall) -> HPACKHeaders
  func received(_ message: ByteBuffer, _ call: ServerCall)
  func receivedEnd(_ call: ServerCall)
  func becameWritable(_ call: ServerCall)
  func stopped()
}

extension RPCHandler {
  func initialMetadata(_ call: ServerCall) -> HPACKHeaders { [:] }
  func becameWritable(_ call: ServerCall) {}
  func stopped() {}
}

/// What the transport under a call does with its output. The native port's stream handler is
/// one; the JSON front ends will be others.
protocol CallResponder: AnyObject {
  var eventLoop: any EventLoop { get }
  /// Whether more output goes out now rather than into a buffer (HTTP/2 flow control, a slow
  /// reader): a producer that is not driven by requests waits for `becameWritable`.
  var isWritable: Bool { get }
  /// Whether the request message being delivered arrived compressed.
  var messageCompressed: Bool { get }
  /// Sends one serialized response message, compressed when `compressed` and the call's
  /// response encoding allows it (the method compresses and the client accepts gzip).
  func send(serialized message: [UInt8], compressed: Bool)
  /// Ends the call with `error` (nil: OK), with `trailers` as trailing metadata. Once only;
  /// later calls are ignored.
  func finish(_ error: RPCError?, trailers: HPACKHeaders)
}

extension CallResponder {
  /// Ends the call with `error` (nil: OK) and no trailing metadata of the handler's.
  func finish(_ error: RPCError?) {
    self.finish(error, trailers: [:])
  }
}

/// A call as a handler sees it: the request's metadata and where its output goes.
struct ServerCall {
  /// Where the output goes.
  let responder: any CallResponder
  /// The request headers (gRPC metadata and, on HTTP/2, pseudo-headers).
  let metadata: HPACKHeaders

  var eventLoop: any EventLoop { self.responder.eventLoop }
  var isWritable: Bool { self.responder.isWritable }
  /// Whether the request message being delivered (in `received`) arrived compressed.
  var messageCompressed: Bool { self.responder.messageCompressed }

  /// Sends one response message; `compressed` asks for gzip (see `RPCMethod.compressesResponses`).
  func send(_ message: some SwiftProtobuf.Message, compressed: Bool = false) {
    do {
      self.responder.send(serialized: try message.serializedBytes(), compressed: compressed)
    } catch {
      self.finish(RPCError(code: .internalError, message: "could not serialize the response: \(error)"))
    }
  }

  /// Ends the call: OK when `error` is nil; `trailers` go with the status.
  func finish(_ error: RPCError? = nil, trailers: HPACKHeaders = [:]) {
    self.responder.finish(error, trailers: trailers)
  }

  /// Decodes a request message, or ends the call with `INVALID_ARGUMENT` and returns nil.
  func decode<Input: SwiftProtobuf.Message>(_ type: Input.Type, from message: ByteBuffer) -> Input? {
    do {
      return try Input(serializedBytes: ProtobufBytes(message))
    } catch {
      self.finish(GRPCErrors.invalidMessage(Input.protoMessageName))
      return nil
    }
  }
}

/// A hosted method: its path and how to make the handler of one call.
struct RPCMethod: Sendable {
  /// The four kinds of gRPC method, as the engine treats them: a streaming response is cut
  /// short by a graceful shutdown, a unary one is left to finish.
  enum Kind: Sendable {
    case unary, serverStreaming, clientStreaming, bidirectionalStreaming
  }

  /// `/pkg.Service/Method`.
  let path: String
  /// `pkg.Service/Method`, as metrics and logs name it (made once, not per call).
  let name: String
  let kind: Kind
  /// Whether the handler may send compressed responses: the response headers then declare
  /// `grpc-encoding: gzip` to clients that accept it. Off unless a method asks for it.
  let compressesResponses: Bool
  let makeHandler: @Sendable () -> any RPCHandler

  init(
    path: String,
    kind: Kind,
    compressesResponses: Bool = false,
    makeHandler: @escaping @Sendable () -> any RPCHandler
  ) {
    self.path = path
    self.name = String(path.dropFirst())
    self.kind = kind
    self.compressesResponses = compressesResponses
    self.makeHandler = makeHandler
  }
}

/// The methods a port serves, by path.
struct RPCRouter: Sendable {
  private let methods: [String: RPCMethod]

  init(_ methods: [RPCMethod]) {
    self.methods = Dictionary(methods.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
  }

  func method(path: String) -> RPCMethod? {
    self.methods[path]
  }
}

extension RPCMethod {
  /// A unary method: `body` turns the one request into the response (or throws the call's error).
  static func unary<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message>(
    _ path: String,
    _ body: @escaping @Sendable (Input, HPACKHeaders) throws(RPCError) -> Output
  ) -> RPCMethod {
    RPCMethod(path: path, kind: .unary) { UnaryHandler(body) }
  }
}

/// Collects a unary call's one request message and answers it when the request ends.
private final class UnaryHandler<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message>: RPCHandler {
  private let body: (Input, HPACKHeaders) throws(RPCError) -> Output
  private var request: Input?
  private var count = 0

  init(_ body: @escaping (Input, HPACKHeaders) throws(RPCError) -> Output) {
    self.body = body
  }

  func received(_ message: ByteBuffer, _ call: ServerCall) {
    self.count += 1
    guard self.count == 1 else {
      call.finish(GRPCErrors.expectedOneMessage(got: self.count))
      return
    }
    self.request = call.decode(Input.self, from: message)
  }

  func receivedEnd(_ call: ServerCall) {
    guard let request = self.request else {
      call.finish(GRPCErrors.expectedOneMessage(got: 0))
      return
    }
    do {
      call.send(try self.body(request, call.metadata))
      call.finish()
    } catch {
      call.finish(error)
    }
  }
}

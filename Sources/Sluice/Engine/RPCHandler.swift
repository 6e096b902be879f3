internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP1
internal import SwiftProtobuf

/// One call's logic in a hosted method, driven by the engine on the call's event loop: no task,
/// no lock, no hop. Every method is called on `call.eventLoop`; a handler that schedules work of
/// its own (a timer) schedules it there.
///
/// The engine calls `start` first, `received` for each request message, `receivedEnd` once the
/// client half-closes, `becameWritable` when a stream that could not take more output can again, and
/// `stopped` when the call ended without the handler (the client cancelled, the deadline
/// passed, a graceful shutdown cut a stream short); after `stopped` or the handler's own
/// `finish` nothing more is called.
protocol RPCHandler: AnyObject {
  /// The call begins: returns the metadata for the response headers, which go out at once (some
  /// clients wait for them before they send), or nil when the handler sends them itself later
  /// with `ServerCall.sendHeaders` (a proxy, with its upstream's) or ends the call without any.
  /// Called once, before anything else.
  func start(_ call: ServerCall) -> HPACKHeaders?
  func received(_ message: ByteBuffer, _ call: ServerCall)
  func receivedEnd(_ call: ServerCall)
  func becameWritable(_ call: ServerCall)
  func stopped()
}

extension RPCHandler {
  func start(_ call: ServerCall) -> HPACKHeaders? { [:] }
  func becameWritable(_ call: ServerCall) {}
  func stopped() {}
}

/// A handler that forwards request messages unchanged (a proxy): on a transport whose framing
/// is gRPC's own (the native port), a call without message encoding hands it the request DATA's
/// whole messages still framed, checked against `--max-message-bytes` but not cut apart, and it
/// forwards them as they are. `received` still takes them one by one everywhere else.
protocol FramedRPCHandler: RPCHandler {
  /// `count` request messages, each with gRPC's 5-byte prefix (uncompressed), in one buffer.
  func receivedFramed(_ messages: ByteBuffer, count: Int, _ call: ServerCall)
}

/// A transport whose framing is gRPC's own (the native port), which takes a proxy's response
/// messages still framed, as its upstream sent them.
protocol FramedCallResponder: CallResponder {
  /// Sends `count` response messages, each with gRPC's 5-byte prefix (uncompressed), already
  /// checked against `--max-message-bytes`.
  func send(framed messages: ByteBuffer, count: Int)
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
  /// Sends the response headers with `metadata`, for a handler whose `start` returned nil. Ignored
  /// once headers, a message or the end went out (a message sends plain headers first).
  func sendHeaders(_ metadata: HPACKHeaders)
  /// While `hold` is true the transport delivers no more request messages (a proxy whose upstream
  /// is not reading): it stops reading from the client, or keeps its HTTP/2 window shut, so the
  /// client is held back by flow control. Messages already received may still arrive.
  func holdRequests(_ hold: Bool)
  /// The output batching of the connection under the call, for a handler that forwards to
  /// another connection (`ConnectionTurn.flushFirst`); nil when there is none.
  var outputTurn: ConnectionTurn? { get }
}

extension CallResponder {
  /// Sends one serialized response message, uncompressed, from a buffer (a proxy's, which has
  /// the upstream's bytes in one). Transports that frame bytes themselves take it without a copy
  /// into an array.
  func send(buffer message: ByteBuffer) {
    self.send(serialized: Array(message.readableBytesView), compressed: false)
  }

  /// Ends the call with `error` (nil: OK) and no trailing metadata of the handler's.
  func finish(_ error: RPCError?) {
    self.finish(error, trailers: [:])
  }
}

/// Where a call came from, as a proxy tells its upstream (`x-forwarded-*`). Only a proxied call
/// asks, so what it needs is read from the request then, not for every call.
struct CallOrigin: Sendable {
  /// Where the host, the scheme and an earlier `X-Forwarded-For` are read from.
  enum Source: Sendable {
    /// A native call: `:authority`, `:scheme` and `x-forwarded-for` of its metadata.
    case metadata
    /// An HTTP/1.1 request (an HTTP JSON call, a WebSocket handshake): `Host` and
    /// `X-Forwarded-For`; `secure` when its connection is TLS.
    case headers(HTTPHeaders, secure: Bool)
  }

  /// The client's address, when the transport has one.
  var peerAddress: SocketAddress?
  var source: Source
  /// `peerAddress`'s IP address as text, when its connection keeps it already.
  var peerText: String? = nil

  /// The client's IP address.
  var peer: String? { self.peerText ?? self.peerAddress?.ipAddress }

  /// The host the client addressed.
  func host(_ metadata: HPACKHeaders) -> String? {
    switch self.source {
    case .metadata: metadata.first(name: ":authority")
    case .headers(let headers, _): headers.first(name: "Host")
    }
  }

  /// `https` when the client's connection is TLS, else `http`.
  func scheme(_ metadata: HPACKHeaders) -> String {
    switch self.source {
    case .metadata: metadata.first(name: ":scheme") == "https" ? "https" : "http"
    case .headers(_, let secure): secure ? "https" : "http"
    }
  }

  /// The `X-Forwarded-For` the request arrived with (a proxy in front of the gateway), if any.
  func forwardedFor(_ metadata: HPACKHeaders) -> String? {
    switch self.source {
    case .metadata:
      let values = metadata[canonicalForm: "x-forwarded-for"]
      return values.isEmpty ? nil : values.joined(separator: ", ")
    case .headers(let headers, _):
      let values = headers["X-Forwarded-For"]
      return values.isEmpty ? nil : values.joined(separator: ", ")
    }
  }
}

/// A call as a handler sees it: the request's metadata and where its output goes.
struct ServerCall {
  /// Where the output goes.
  let responder: any CallResponder
  /// The request headers (gRPC metadata and, on HTTP/2, pseudo-headers).
  let metadata: HPACKHeaders
  /// When the call's deadline passes (the transport ends the call then), if it has one.
  let deadline: NIODeadline?
  /// Where the call came from.
  let origin: CallOrigin
  /// The call's span, with `--otlp-endpoint` (a proxy makes it the upstream's parent).
  var trace: CallTrace? = nil

  var eventLoop: any EventLoop { self.responder.eventLoop }
  var isWritable: Bool { self.responder.isWritable }
  /// Whether the request message being delivered (in `received`) arrived compressed.
  var messageCompressed: Bool { self.responder.messageCompressed }

  /// Sends one response message; `compressed` asks for gzip (see `RPCMethod.compressesResponses`).
  func send(_ message: some SwiftProtobuf.Message, compressed: Bool = false) {
    do {
      self.responder.send(serialized: try message.serializedBytes(), compressed: compressed)
    } catch {
      self.finish(GRPCErrors.unserializableResponse(error))
    }
  }

  /// Sends the response headers, for a handler whose `start` returned nil.
  func sendHeaders(_ metadata: HPACKHeaders) {
    self.responder.sendHeaders(metadata)
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
  /// Whether `--require-bearer` applies: every method but the health service's Check and Watch,
  /// which load balancers and orchestrators probe without credentials.
  let authenticates: Bool
  /// Whether the method is known from the gateway's own services or descriptors; false for a
  /// path under an upstream without descriptors, whose name the client chose (its metrics
  /// label is then bounded, see `RPCMonitor`).
  let declared: Bool
  let makeHandler: @Sendable () -> any RPCHandler

  init(
    path: String,
    kind: Kind,
    compressesResponses: Bool = false,
    authenticates: Bool = true,
    declared: Bool = true,
    makeHandler: @escaping @Sendable () -> any RPCHandler
  ) {
    self.path = path
    self.name = String(path.dropFirst())
    self.kind = kind
    self.compressesResponses = compressesResponses
    self.authenticates = authenticates
    self.declared = declared
    self.makeHandler = makeHandler
  }
}

/// The methods a port serves, by path: the hosted ones, then what the upstreams serve.
struct RPCRouter: Sendable {
  private let methods: [String: RPCMethod]
  private let upstreams: UpstreamDirectory?

  init(_ methods: [RPCMethod], upstreams: UpstreamDirectory? = nil) {
    self.methods = Dictionary(methods.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
    self.upstreams = upstreams
  }

  func method(path: String) -> RPCMethod? {
    self.methods[path] ?? self.upstreams?.method(path: path)
  }
}

extension RPCMethod {
  /// A unary method: `body` turns the one request into the response (or throws the call's error).
  static func unary<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message>(
    _ path: String,
    authenticates: Bool = true,
    _ body: @escaping @Sendable (Input, HPACKHeaders) throws(RPCError) -> Output
  ) -> RPCMethod {
    RPCMethod(path: path, kind: .unary, authenticates: authenticates) { UnaryHandler(body) }
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

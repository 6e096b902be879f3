internal import Foundation
internal import GRPCCore
internal import NIOCore
internal import NIOHPACK

/// The server side of one gRPC call on one HTTP/2 stream, as a value: it takes the stream's
/// events (request headers, DATA, the end of the request, the handler's messages and end, a reset)
/// and says what to write, so that the channel handler carries out actions and decides nothing.
///
/// Follows gRPC's PROTOCOL-HTTP2: one request HEADERS (`:method POST`, `content-type:
/// application/grpc[+proto]`, optional `grpc-timeout` and `grpc-encoding`), length-prefixed
/// messages, then the response: HEADERS, messages, trailers with `grpc-status`; an error before
/// any response message is a trailers-only response.
struct GRPCServerStreamState {
  /// What a request's headers ask for, once they have passed.
  struct RequestHead {
    /// `/pkg.Service/Method`.
    var path: String
    /// The call's time limit from `grpc-timeout`, if any.
    var timeout: Duration?
    /// Whether messages flagged compressed are gzip (`grpc-encoding: gzip`).
    var gzip: Bool
    /// The request headers, pseudo-headers included.
    var headers: HPACKHeaders
  }

  enum Phase: Equatable {
    /// No request headers yet.
    case idle
    /// The call runs; `responseStarted` once the response HEADERS are out, `requestEnded` once
    /// the client half-closed.
    case open(responseStarted: Bool, requestEnded: Bool)
    /// The response's trailers are out, or the stream was reset.
    case closed
  }

  /// What to do with a HEADERS frame from the client.
  enum HeadersAction {
    /// The request headers: route and start the call.
    case start(RequestHead)
    /// Request headers gRPC does not allow: write this trailers-only answer, run nothing.
    case refuse(Ending, RPCError)
    /// A second HEADERS (trailers, which HTTP/2 allows to end a request): only its end matters.
    case trailers(RequestAction)
  }

  /// What a DATA frame or the request's end amounts to.
  enum RequestAction {
    /// Hand these messages (inflated; `compressed` says how they came) to the handler, then
    /// (when `ended`) the request's end.
    case deliver([GRPCMessageDeframer.Message], ended: Bool)
    /// Hand these `count` messages, still framed, to a handler that forwards them as they are
    /// (`passesFramed`), then (when `ended`) the request's end.
    case deliverFramed(ByteBuffer, count: Int, ended: Bool)
    /// End the call with this error (a message too large, compressed, or cut short).
    case fail(RPCError)
    /// Nothing for the handler (the call is over).
    case ignore
  }

  private(set) var phase: Phase = .idle
  private var deframer: GRPCMessageDeframer
  private let maximumMessageBytes: Int
  private var gzip = false
  /// Whether the response headers declare `grpc-encoding: gzip`, so that response messages may
  /// go compressed: set before the response starts, for a method that compresses and a client
  /// that accepts gzip.
  var compressesResponses = false
  /// Whether request messages are handed on still framed (`deliverFramed`): for a handler that
  /// forwards them unchanged (a proxy), on a call without message encoding. Set at the start.
  var passesFramed = false

  init(maximumMessageBytes: Int) {
    self.deframer = GRPCMessageDeframer(maximumMessageBytes: maximumMessageBytes)
    self.maximumMessageBytes = maximumMessageBytes
  }

  /// Whether the handler still expects events: the call is open.
  var isOpen: Bool {
    if case .open = self.phase { return true }
    return false
  }

  /// Bytes of a request message begun and not yet complete.
  var partialMessageBytes: Int { self.deframer.bufferedBytes }

  /// Whether the client has half-closed (or the call is over): no more request DATA is wanted.
  var requestEnded: Bool {
    if case .open(_, let ended) = self.phase { return ended }
    return true
  }

  // MARK: - Request

  /// A HEADERS frame arrived; `endStream` when it also ends the request.
  mutating func receivedHeaders(_ headers: HPACKHeaders, endStream: Bool) -> HeadersAction {
    guard self.phase == .idle else {
      return .trailers(endStream ? self.receivedEnd() : .ignore)
    }
    switch Self.check(headers) {
    case .success(let head):
      self.phase = .open(responseStarted: false, requestEnded: endStream)
      self.gzip = head.gzip
      return .start(head)
    case .failure(let refusal):
      self.phase = .closed
      let answer = Self.trailersOnly(refusal.error, httpStatus: refusal.httpStatus)
      return .refuse(Ending(headers: answer, trailersOnly: true, resetAfter: !endStream), refusal.error)
    }
  }

  /// A DATA frame arrived.
  mutating func receivedData(_ bytes: ByteBuffer, endStream: Bool) -> RequestAction {
    guard case .open(let started, let ended) = self.phase, !ended else { return .ignore }
    self.deframer.append(bytes)
    if self.passesFramed, !self.gzip {
      let framed: (bytes: ByteBuffer, count: Int)
      do {
        framed = try self.deframer.nextFramed()
      } catch {
        return .fail(error)
      }
      if endStream {
        if self.deframer.hasPartialMessage { return .fail(GRPCErrors.truncatedMessage) }
        self.phase = .open(responseStarted: started, requestEnded: true)
      }
      return .deliverFramed(framed.bytes, count: framed.count, ended: endStream)
    }
    var messages: [GRPCMessageDeframer.Message] = []
    do {
      while var message = try self.deframer.next() {
        if message.compressed {
          guard self.gzip else { return .fail(GRPCErrors.compressedWithoutEncoding) }
          message.bytes = try GzipMessage.inflate(message.bytes, limit: self.maximumMessageBytes)
        }
        messages.append(message)
      }
    } catch {
      return .fail(error)
    }
    if endStream {
      if self.deframer.hasPartialMessage {
        return .fail(GRPCErrors.truncatedMessage)
      }
      self.phase = .open(responseStarted: started, requestEnded: true)
    }
    return .deliver(messages, ended: endStream)
  }

  /// The client's second HEADERS (trailers) ended the request.
  mutating func receivedEnd() -> RequestAction {
    self.receivedData(ByteBuffer(), endStream: true)
  }

  // MARK: - Response

  /// The handler sends a message: the response headers to write first, if they are not out yet;
  /// nil when the call is already over (the message is dropped).
  mutating func sendingMessage() -> (headers: HPACKHeaders?, open: Bool) {
    guard case .open(let started, let ended) = self.phase else { return (nil, false) }
    if started { return (nil, true) }
    self.phase = .open(responseStarted: true, requestEnded: ended)
    return (self.compressesResponses ? Self.gzipResponseHeaders : Self.responseHeaders, true)
  }

  /// How a call's last frame looks.
  struct Ending {
    /// The headers of the last frame (END_STREAM): trailers, or a whole trailers-only response.
    var headers: HPACKHeaders
    /// Whether the response headers (and so `extraHeaders` of the engine) are part of this frame.
    var trailersOnly: Bool
    /// Whether the client is still sending: the stream is reset with NO_ERROR after the trailers
    /// (as grpc-go does, after a short grace) so that the client stops.
    var resetAfter: Bool
  }

  /// The call ends with `error` (nil: OK) and the handler's trailing metadata: the frame to
  /// write, or nil when it had already ended.
  mutating func finishing(_ error: RPCError?, trailers: HPACKHeaders = [:]) -> Ending? {
    guard case .open(let started, let ended) = self.phase else { return nil }
    self.phase = .closed
    var headers: HPACKHeaders
    if !started {
      headers = Self.trailersOnly(error)
    } else if error == nil {
      headers = Self.okTrailers  // shared: no list is made for a call that ends OK
    } else {
      headers = [:]
      Self.addStatus(error, to: &headers)
    }
    if !trailers.isEmpty { headers.add(contentsOf: trailers) }
    return Ending(headers: headers, trailersOnly: !started, resetAfter: !ended)
  }

  /// The stream was reset or its channel closed: true when the call was still open (the handler
  /// must stop; the call counts as cancelled).
  mutating func streamClosed() -> Bool {
    let wasOpen = self.isOpen
    self.phase = .closed
    return wasOpen
  }

  // MARK: - Headers

  /// The message encodings the gateway reads, as `grpc-accept-encoding` names them.
  static let acceptedEncodings = "identity,gzip"

  /// The response headers of a call whose responses are not compressed.
  static let responseHeaders = Self.responseHeaders(status: 200)

  /// The response headers of a call whose response messages may be gzip-compressed (each
  /// message's flag says whether it is).
  static let gzipResponseHeaders: HPACKHeaders = {
    var headers = Self.responseHeaders
    headers.add(name: "grpc-encoding", value: "gzip")
    return headers
  }()

  /// The response headers with another HTTP status, `:status` first (pseudo-headers lead).
  static func responseHeaders(status: Int) -> HPACKHeaders {
    [":status": "\(status)", "content-type": "application/grpc", "grpc-accept-encoding": Self.acceptedEncodings]
  }

  /// A refused request: the gRPC error and the HTTP status that goes with it.
  struct Refusal: Error {
    var error: RPCError
    var httpStatus: Int
  }

  /// Checks request headers against gRPC's PROTOCOL-HTTP2, the way grpc-go's server answers.
  static func check(_ headers: HPACKHeaders) -> Result<RequestHead, Refusal> {
    let method = headers.first(name: ":method") ?? ""
    guard method == "POST" else {
      return .failure(Refusal(error: GRPCErrors.methodNotPOST(method), httpStatus: 405))
    }
    let contentType = headers.first(name: "content-type") ?? ""
    guard Self.isGRPCContentType(contentType) else {
      return .failure(Refusal(error: GRPCErrors.invalidContentType(contentType), httpStatus: 415))
    }
    var timeout: Duration?
    for value in headers["grpc-timeout"] {
      guard let parsed = GRPCTimeout.parse(value) else {
        return .failure(Refusal(error: GRPCErrors.invalidTimeout(value), httpStatus: 200))
      }
      timeout = parsed
    }
    var gzip = false
    for encoding in headers["grpc-encoding"] {
      switch encoding {
      case "identity": break
      case "gzip": gzip = true
      default: return .failure(Refusal(error: GRPCErrors.unsupportedEncoding(encoding), httpStatus: 200))
      }
    }
    guard let path = headers.first(name: ":path"), path.utf8.first == UInt8(ascii: "/") else {
      return .failure(Refusal(error: GRPCErrors.unknownMethod(headers.first(name: ":path") ?? ""), httpStatus: 200))
    }
    return .success(RequestHead(path: path, timeout: timeout, gzip: gzip, headers: headers))
  }

  /// Whether the client reads gzip-compressed responses: its `grpc-accept-encoding` lists gzip.
  static func acceptsGzip(_ headers: HPACKHeaders) -> Bool {
    headers["grpc-accept-encoding"].contains { list in
      list.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == "gzip" }
    }
  }

  /// `application/grpc`, optionally `+proto` or `;params`; anything else is not gRPC.
  static func isGRPCContentType(_ value: String) -> Bool {
    let prefix = "application/grpc"
    guard value.hasPrefix(prefix) else { return false }
    let rest = value.utf8.dropFirst(prefix.utf8.count)
    guard let next = rest.first else { return true }
    return next == UInt8(ascii: "+") || next == UInt8(ascii: ";")
  }

  /// A trailers-only response carrying `error` (nil: OK): the response headers (with
  /// `grpc-accept-encoding`, which a refused encoding needs) and the status, in one frame.
  static func trailersOnly(_ error: RPCError?, httpStatus: Int = 200) -> HPACKHeaders {
    var headers = httpStatus == 200 ? Self.responseHeaders : Self.responseHeaders(status: httpStatus)
    Self.addStatus(error, to: &headers)
    return headers
  }

  /// `grpc-status`, `grpc-message` (percent-encoded) and the error's metadata.
  static func addStatus(_ error: RPCError?, to headers: inout HPACKHeaders) {
    guard let error else {
      headers.add(name: "grpc-status", value: "0")
      return
    }
    headers.add(name: "grpc-status", value: "\(error.code.rawValue)")
    if !error.message.isEmpty {
      headers.add(name: "grpc-message", value: Self.percentEncoded(error.message))
    }
    for (key, value) in error.metadata where !MetadataKeys.isFraming(key) || key == "grpc-status-details-bin" {
      switch value {
      case .string(let string): headers.add(name: key, value: string)
      case .binary(let bytes): headers.add(name: key, value: Data(bytes).base64EncodedString())
      }
    }
  }

  /// The trailers of a call that ended OK with no trailing metadata, made once by `addStatus`.
  static let okTrailers: HPACKHeaders = {
    var headers: HPACKHeaders = [:]
    Self.addStatus(nil, to: &headers)
    return headers
  }()

  /// `grpc-message`'s encoding: bytes outside printable ASCII, and `%`, as `%XX`.
  static func percentEncoded(_ message: String) -> String {
    let hex = Array("0123456789ABCDEF".utf8)
    var encoded: [UInt8] = []
    encoded.reserveCapacity(message.utf8.count)
    for byte in message.utf8 {
      if byte >= 0x20, byte <= 0x7E, byte != UInt8(ascii: "%") {
        encoded.append(byte)
      } else {
        encoded += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
      }
    }
    return String(decoding: encoded, as: UTF8.self)
  }
}

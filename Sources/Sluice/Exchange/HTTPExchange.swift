internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP1

/// One HTTP request as a protocol adapter (gRPC-Web, and the protocols that follow it) sees it,
/// whichever HTTP version carried it: an HTTP/1.1 request of the HTTP port, or an HTTP/2 stream of
/// the native port that is not native gRPC.
struct HTTPExchangeRequest {
  var method: HTTPMethod
  /// The request target: the path and the query.
  var uri: String
  /// The header fields; from HTTP/2, without the pseudo-headers, and `:authority` as `Host`.
  var headers: HTTPHeaders

  /// The path without the query: an RPC's `/<package>.<Service>/<Method>`.
  var path: String {
    guard let query = self.uri.utf8.firstIndex(of: UInt8(ascii: "?")) else { return self.uri }
    return String(self.uri[..<query])
  }

  /// The media type of `Content-Type`, lowercased, without parameters; empty when there is none.
  var mediaType: String {
    self.headers.first(name: "Content-Type").map(HTTPCall.mediaType(of:)) ?? ""
  }

  /// An HTTP/2 request's header block: its pseudo-headers become the method, the target and
  /// `Host`; the other fields are kept as they are.
  init?(http2 headers: HPACKHeaders) {
    guard let method = headers.first(name: ":method"), let path = headers.first(name: ":path") else { return nil }
    var fields = HTTPHeaders()
    fields.reserveCapacity(headers.count)
    if let authority = headers.first(name: ":authority") { fields.add(name: "Host", value: authority) }
    for (name, value, _) in headers where name.utf8.first != UInt8(ascii: ":") {
      fields.add(name: name, value: value)
    }
    self.init(method: HTTPMethod(rawValue: method), uri: path, headers: fields)
  }

  init(method: HTTPMethod, uri: String, headers: HTTPHeaders) {
    self.method = method
    self.uri = uri
    self.headers = headers
  }

  /// The metadata of a call made by this request, as a native call's: the pseudo-headers, then
  /// every header but the hop-by-hop ones, the body's length, the gateway's own (which no client may
  /// set) and the protocol's `framing` keys (lowercase).
  func callMetadata(path: String, secure: Bool, framing: (String) -> Bool = { _ in false }) -> HPACKHeaders {
    var metadata: HPACKHeaders = [":method": "POST", ":scheme": secure ? "https" : "http", ":path": path]
    if let host = self.headers.first(name: "Host") { metadata.add(name: ":authority", value: host) }
    for (name, value) in self.headers {
      let key = name.lowercased()
      guard !MetadataKeys.isHopByHop(key), key != "content-length", !key.hasPrefix(MetadataKeys.gatewayPrefix),
        !framing(key)
      else { continue }
      metadata.add(name: key, value: value)
    }
    return metadata
  }
}

/// Where a protocol adapter's response goes, and what it may ask of the request's transport: the
/// HTTP port's HTTP/1.1 connection (`HTTPConnectionHandler`) or one HTTP/2 stream of the native port
/// (`HTTP2ExchangeStream`). Everything runs on `eventLoop`.
///
/// A response is a head, body bytes, and its end; neither transport adds framing of its own the
/// adapter has to know about (HTTP/1.1 chunks a body without `Content-Length`).
protocol HTTPExchange: AnyObject {
  var eventLoop: any EventLoop { get }
  var allocator: ByteBufferAllocator { get }
  /// Whether more output goes out now rather than into a buffer (the socket, HTTP/2 flow control).
  var isWritable: Bool { get }
  /// The output batching of the connection, for a handler that forwards to another one.
  var outputTurn: ConnectionTurn? { get }
  var remoteAddress: SocketAddress? { get }
  /// Whether the connection is TLS.
  var isSecure: Bool { get }
  /// Whether the request came over HTTP/2 (both directions stream at once there; over HTTP/1.1 a
  /// browser sends its whole body first).
  var isHTTP2: Bool { get }
  func writeHead(_ status: HTTPResponseStatus, headers: HTTPHeaders)
  func writeBody(_ bytes: ByteBuffer)
  /// Ends the response. `reusable`: the HTTP/1.1 connection may carry another request after it
  /// (false after an error that leaves the request's body unread or broken).
  func endResponse(reusable: Bool)
  /// While `hold` is true no more request body is delivered: the transport stops reading, or
  /// keeps its HTTP/2 window shut.
  func holdRequests(_ hold: Bool)
  /// Flushes at the end of the current read or callback, or on the loop's next turn.
  func flushSoon()
  /// Runs `body` as a callback of the connection: its writes are flushed once at its end.
  func inCallback(_ body: () -> Void)
}

/// A protocol adapter serving one exchange: the request's body and end, and what happens to the
/// transport under it. Called on the exchange's event loop; nothing after `exchangeGone`.
protocol HTTPExchangeHandler: AnyObject {
  func receivedBody(_ bytes: ByteBuffer)
  func receivedEnd()
  /// Output goes out again after `isWritable` was false.
  func becameWritable()
  /// The client went away, reset the stream, or broke HTTP framing: the call is cancelled and
  /// nothing more is written.
  func exchangeGone()
  /// A graceful shutdown began: a streaming call ends now with UNAVAILABLE, a unary one finishes.
  func quiesce()
}

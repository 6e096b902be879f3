internal import Foundation
internal import GRPCCore
internal import NIOCore
internal import NIOHTTP1
internal import SluiceCodec
internal import Synchronization

/// Writes one HTTP JSON call's response in its framing. The status line waits for the first
/// response message (or the end), so an RPC that fails before sending anything gets a mapped HTTP
/// status; after that, the outcome travels in the `$end` line.
final class HTTPCallResponder: Sendable {
  /// How responses are framed.
  enum Framing: Sendable {
    /// One JSON document (unary and client-streaming methods).
    case json
    /// One JSON document per line, then `{"$end":…}` (server-streaming and bidi methods).
    case ndjson
    /// Server-Sent Events: each NDJSON line as the `data` of one event.
    case eventStream

    var contentType: String {
      switch self {
      case .json: "application/json"
      case .ndjson: "application/x-ndjson"
      case .eventStream: "text/event-stream"
      }
    }
  }

  /// Where the status line is. `writing` stays when its write failed (the task was cancelled or
  /// the connection broke): nothing more may be written then, not knowing what went out.
  private enum Head {
    case notSent, writing, sent
  }

  private struct State {
    var initialMetadata: Metadata = [:]
    var head = Head.notSent
    /// The response of a `.json` call, held until the trailers say it succeeded.
    var single: [UInt8]?
  }

  let framing: Framing
  private let outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
  private let allocator: ByteBufferAllocator
  private let baseHeaders: HTTPHeaders
  private let metrics: GatewayMetrics
  private let state = Mutex(State())

  init(
    framing: Framing,
    outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>,
    allocator: ByteBufferAllocator,
    headers: HTTPHeaders,
    metrics: GatewayMetrics
  ) {
    self.metrics = metrics
    self.framing = framing
    self.outbound = outbound
    self.allocator = allocator
    self.baseHeaders = headers
  }

  /// The RPC's initial metadata: sent as `grpc-metadata-<key>` headers with the status line.
  func headers(_ metadata: Metadata) {
    self.state.withLock { $0.initialMetadata = metadata }
  }

  /// One response message as JSON text.
  func message(_ json: [UInt8]) async throws {
    if self.framing == .json {
      try self.state.withLock { state throws(RPCError) in
        guard state.single == nil else {
          throw RPCError(
            code: .internalError, message: "the service sent more than one response to a single-response method")
        }
        state.single = json
      }
      return
    }
    let metadata = self.state.withLock { state -> Metadata? in
      guard state.head == .notSent else { return nil }
      state.head = .writing
      return state.initialMetadata
    }
    if let metadata {
      // In a task of its own, so that cancelling the call (a bad NDJSON line, say) cannot stop
      // the status line half-way: once it is attempted, the outcome must follow as the `$end` line.
      let head = self.head(.ok, metadata: metadata, keepAlive: true)
      let outbound = self.outbound
      try await Task { try await outbound.write(.head(head)) }.value
      self.state.withLock { $0.head = .sent }
    }
    try await self.writeLine(json)
  }

  /// Ends the response with the RPC's outcome. Returns whether the connection can carry another
  /// request (it cannot after an error answer, or when `keepAlive` is false).
  func finish(_ result: Result<Metadata, RPCError>, keepAlive: Bool, errorStatus: HTTPResponseStatus?) async throws
    -> Bool
  {
    let (head, initialMetadata, single) = self.state.withLock {
      ($0.head, $0.initialMetadata, $0.single)
    }
    if head == .writing { return false }  // unknown what went out: close without another word
    if head == .sent {
      // Streaming, after messages: the outcome is the last line.
      try await self.writeLine(Self.endLine(result))
      try await self.outbound.write(.end(nil))
      return keepAlive
    }
    switch result {
    case .failure(let error):
      try await self.writeError(error, status: errorStatus)
      return false
    case .success(let trailers) where self.framing == .json:
      guard let single else {
        try await self.writeError(
          RPCError(code: .internalError, message: "the service ended the call without a response"),
          status: nil
        )
        return false
      }
      var metadata = initialMetadata
      metadata.add(contentsOf: trailers)
      var head = self.head(.ok, metadata: metadata, keepAlive: keepAlive)
      head.headers.add(name: "Content-Length", value: "\(single.count)")
      try await self.outbound.write(.head(head))
      try await self.outbound.write(.body(.byteBuffer(self.allocator.buffer(bytes: single))))
      self.metrics.bytes(.http, .out, count: single.count)
      try await self.outbound.write(.end(nil))
      return keepAlive
    case .success:
      // A stream that ended without a message: the status line, then the `$end` line.
      try await self.outbound.write(.head(self.head(.ok, metadata: initialMetadata, keepAlive: keepAlive)))
      try await self.writeLine(Self.endLine(result))
      try await self.outbound.write(.end(nil))
      return keepAlive
    }
  }

  /// An error answer before anything was sent; the connection closes after it.
  func writeError(_ error: RPCError, status: HTTPResponseStatus?) async throws {
    var headers = self.baseHeaders
    if error.code == .unauthenticated { headers.add(name: "WWW-Authenticate", value: "Bearer") }
    let response = HTTPStatusResponse(
      status ?? error.code.httpStatus,
      code: error.code,
      message: error.message,
      trailers: error.metadata,
      headers: headers
    )
    try await response.write(to: self.outbound, allocator: self.allocator)
  }

  private static func endLine(_ result: Result<Metadata, RPCError>) -> [UInt8] {
    switch result {
    case .success(let trailers): StatusJSON.endFrame(code: nil, message: "", trailers: trailers)
    case .failure(let error): StatusJSON.endFrame(code: error.code, message: error.message, trailers: error.metadata)
    }
  }

  private func writeLine(_ json: [UInt8]) async throws {
    var buffer = self.allocator.buffer(capacity: json.count + 8)
    if self.framing == .eventStream { buffer.writeString("data: ") }
    buffer.writeBytes(json)
    buffer.writeString(self.framing == .eventStream ? "\n\n" : "\n")
    try await self.outbound.write(.body(.byteBuffer(buffer)))
    self.metrics.bytes(.http, .out, count: buffer.readableBytes)
  }

  private func head(_ status: HTTPResponseStatus, metadata: Metadata, keepAlive: Bool) -> HTTPResponseHead {
    var headers = self.baseHeaders
    headers.add(name: "Content-Type", value: self.framing.contentType)
    headers.add(name: CORS.noSniff.name, value: CORS.noSniff.value)
    if self.framing != .json {
      headers.add(name: "Cache-Control", value: "no-cache")
    }
    var exposed: [String] = []
    for (key, values) in StatusJSON.json(metadata).members {
      guard case .array(let values) = values else { continue }
      let name = "grpc-metadata-\(key)"
      exposed.append(name)
      for case .string(let value) in values { headers.add(name: name, value: value) }
    }
    CORS.exposing(exposed, in: &headers)
    if !keepAlive { headers.add(name: "Connection", value: "close") }
    return HTTPResponseHead(version: .http1_1, status: status, headers: headers)
  }
}

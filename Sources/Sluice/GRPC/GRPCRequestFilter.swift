internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHPACK
internal import NIOHTTP2

/// The first handler of every native gRPC stream: checks the request headers that grpc-swift
/// would otherwise parse with a trap, and answers a malformed request itself with a
/// trailers-only gRPC error, so that one bad request ends one stream instead of the process;
/// and gives a request that ends with its headers the form grpc-swift answers.
///
/// Written by hand because grpc-swift 2.4.3 (the version available here) traps in `Timeout`'s
/// initializer on a negative `grpc-timeout` such as `-1S`, before any interceptor runs. Once a
/// request's headers have passed, the filter leaves the stream's pipeline.
final class GRPCRequestFilter: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias InboundOut = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  private let logger: Logger
  private var refused = false

  init(logger: Logger) {
    self.logger = logger
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if self.refused { return }  // the rest of a refused request
    guard case .headers(let headers) = Self.unwrapInboundIn(data) else {
      context.fireChannelRead(data)  // grpc-swift answers frames out of order itself
      return
    }
    if let problem = Self.problem(in: headers.headers) {
      self.refused = true
      self.logger.debug(
        "Refused a malformed gRPC request",
        metadata: ["sluice.rpc.method": "\(headers.headers.first(name: ":path") ?? "")", "sluice.error": "\(problem)"]
      )
      let trailers = Self.trailersOnly(code: problem.code, message: problem.message)
      context.writeAndFlush(Self.wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))))
        .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
      return
    }
    if headers.endStream {
      // A request with no message at all (HEADERS with END_STREAM): grpc-swift-nio-transport
      // 2.9.2 never answers it, whatever the method, and the stream hangs. The same request with
      // the end on an empty DATA frame, as clients usually send it, is answered.
      var open = headers
      open.endStream = false
      context.fireChannelRead(Self.wrapInboundOut(.headers(open)))
      let end = HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))
      context.fireChannelRead(Self.wrapInboundOut(end))
    } else {
      context.fireChannelRead(data)
    }
    // Leave: messages need no check. (Measured: leaving and passing frames on cost unary calls
    // the same; streams of many messages are spared a hop per frame.)
    context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
  }

  /// What is wrong with a request's headers, or nil when grpc-swift may parse them.
  static func problem(in headers: HPACKHeaders) -> RPCError? {
    for value in headers["grpc-timeout"] where GRPCTimeout.parse(value) == nil {
      return GRPCTimeout.invalid(value)
    }
    return nil
  }

  /// A trailers-only response (gRPC's PROTOCOL-HTTP2): HTTP 200, the gRPC content type and the
  /// status, in one HEADERS frame that ends the stream.
  static func trailersOnly(code: RPCError.Code, message: String) -> HPACKHeaders {
    [
      ":status": "200",
      "content-type": "application/grpc",
      "grpc-status": "\(code.rawValue)",
      "grpc-message": Self.percentEncoded(message),
    ]
  }

  /// `grpc-message`'s encoding: bytes outside printable ASCII, and `%`, as `%XX`.
  static func percentEncoded(_ message: String) -> String {
    var encoded = ""
    for byte in message.utf8 {
      if byte >= 0x20, byte <= 0x7E, byte != UInt8(ascii: "%") {
        encoded.unicodeScalars.append(Unicode.Scalar(byte))
      } else {
        encoded += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
      }
    }
    return encoded
  }
}

extension String {
  fileprivate func leftPadded(to width: Int) -> String {
    self.count >= width ? self : String(repeating: "0", count: width - self.count) + self
  }
}

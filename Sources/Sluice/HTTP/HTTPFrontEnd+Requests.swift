internal import GRPCCore
internal import NIOCore
internal import NIOHTTP1

extension HTTPFrontEnd {
  /// Plain HTTP requests on the JSON port. For now: a pointer to the WebSocket front end (HTTP
  /// JSON calls are issue 5).
  func serveHTTP(_ channel: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async throws {
    try await channel.executeThenClose { inbound, outbound in
      for try await part in inbound {
        guard case .head = part else { continue }
        let response = HTTPStatusResponse(
          .upgradeRequired,
          code: .unimplemented,
          message: "open a WebSocket on /<package>.<Service>/<Method>"
        )
        try await outbound.write(.head(response.head))
        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: response.body))))
        try await outbound.write(.end(nil))
        return
      }
    }
  }
}

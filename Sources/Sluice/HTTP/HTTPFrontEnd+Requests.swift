internal import GRPCCore
internal import NIOCore
internal import NIOHTTP1
internal import SluiceCodec

extension HTTPFrontEnd {
  /// Plain HTTP requests on the JSON port. For now: a pointer to the WebSocket front end (HTTP
  /// JSON calls are issue 5).
  func serveHTTP(_ channel: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async throws {
    try await channel.executeThenClose { inbound, outbound in
      for try await part in inbound {
        guard case .head(let head) = part else { continue }
        _ = head
        let (status, code, message): (HTTPResponseStatus, RPCError.Code, String) = (
          .upgradeRequired, .unimplemented, "open a WebSocket on /<package>.<Service>/<Method>"
        )
        let body = JSONValue.object(["code": .integer(code.rawValue), "message": .string(message)]).serializedBytes
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Connection", value: "close")
        try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)))
        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
        try await outbound.write(.end(nil))
        return
      }
    }
  }
}

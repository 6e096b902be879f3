internal import GRPCCore
internal import NIOHTTP1
internal import SluiceCodec

/// An HTTP error answer whose body is a `google.rpc.Status` JSON object (with the trailers, if
/// any); the connection closes after it.
struct HTTPStatusResponse {
  let head: HTTPResponseHead
  let body: [UInt8]

  init(
    _ status: HTTPResponseStatus,
    code: RPCError.Code,
    message: String,
    trailers: Metadata = [:],
    headers extra: HTTPHeaders = [:]
  ) {
    self.body = JSONValue.object(StatusJSON.status(code: code, message: message, trailers: trailers)).serializedBytes
    var headers = extra
    headers.add(name: "Content-Type", value: "application/json")
    headers.add(name: "Content-Length", value: "\(self.body.count)")
    headers.add(name: "Connection", value: "close")
    self.head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
  }
}

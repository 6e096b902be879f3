internal import GRPCCore
internal import NIOHTTP1
internal import SluiceCodec

/// An HTTP error answer whose body is a `google.rpc.Status` JSON object; the connection closes
/// after it.
struct HTTPStatusResponse {
  let head: HTTPResponseHead
  let body: [UInt8]

  init(_ status: HTTPResponseStatus, code: RPCError.Code, message: String) {
    self.body = JSONValue.object(StatusJSON.status(code: code, message: message)).serializedBytes
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: "application/json")
    headers.add(name: "Content-Length", value: "\(self.body.count)")
    headers.add(name: "Connection", value: "close")
    self.head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
  }
}

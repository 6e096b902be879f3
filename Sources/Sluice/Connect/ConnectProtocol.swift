internal import Foundation
internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import SluiceCodec

/// Connect's wire format (connectrpc.com/docs/protocol): which requests are Connect, its error
/// JSON with string codes, its timeout header and its envelopes' flags.
enum ConnectProtocol {
  /// What a request's content type asks for.
  struct ContentType: Equatable {
    /// `application/connect+…`: enveloped messages, the status in an end-stream envelope; else a
    /// unary call whose body is the message.
    var streaming: Bool
    /// `json`: proto3 JSON messages (through the gateway's codec); else binary protobuf.
    var json: Bool

    var mediaType: String {
      (self.streaming ? "application/connect+" : "application/") + (self.json ? "json" : "proto")
    }
  }

  /// The envelope flag of a compressed message, and of the end-stream message.
  static let compressedFlag: UInt8 = 0x01
  static let endStreamFlag: UInt8 = 0x02

  /// Connect by content type: `application/connect+proto|json` (streaming), `application/proto`
  /// (unary), or `application/json` with `Connect-Protocol-Version: 1` (without it, JSON is Sluice's
  /// HTTP JSON). Nil for anything else; `application/connect+` with another codec is Connect with
  /// an unsupported codec (`unsupported`).
  static func contentType(mediaType: String, protocolVersion: String?) -> (ContentType?, unsupported: Bool) {
    if mediaType.hasPrefix("application/connect+") {
      switch mediaType.dropFirst("application/connect+".count) {
      case "proto": return (ContentType(streaming: true, json: false), false)
      case "json": return (ContentType(streaming: true, json: true), false)
      default: return (nil, true)
      }
    }
    if mediaType == "application/proto" { return (ContentType(streaming: false, json: false), false) }
    if mediaType == "application/json", protocolVersion != nil {
      return (ContentType(streaming: false, json: true), false)
    }
    return (nil, false)
  }

  /// A unary call made with an HTTP GET: `?connect=v1&encoding=…&message=…[&base64=1][&compression=gzip]`.
  struct GetRequest: Equatable {
    var json: Bool
    var message: [UInt8]
    var gzip: Bool
  }

  /// Whether a GET asks for Connect: its query has `connect=v1`.
  static func isGet(method: String, uri: String) -> Bool {
    method == "GET" && uri.contains("connect=v1")
  }

  /// The call a GET's query describes, or the error that refuses it.
  static func getRequest(uri: String) -> Result<GetRequest, RPCError> {
    let items = URLComponents(string: uri)?.queryItems ?? []
    func value(_ name: String) -> String? { items.first { $0.name == name }?.value }
    guard value("connect") == "v1" else { return .failure(GRPCErrors.connectGetQuery("connect=v1 is missing")) }
    let json: Bool
    switch value("encoding") {
    case "proto": json = false
    case "json": json = true
    case let other: return .failure(GRPCErrors.connectGetQuery("encoding \"\(other ?? "")\" is not proto or json"))
    }
    let gzip: Bool
    switch value("compression") {
    case nil, "identity": gzip = false
    case "gzip": gzip = true
    case let other?: return .failure(GRPCErrors.unsupportedContentEncoding(other, header: "compression"))
    }
    guard let text = value("message") else { return .failure(GRPCErrors.connectGetQuery("message is missing")) }
    let message: [UInt8]
    if value("base64") == "1" {
      guard let decoded = Base64.decode(text) else {
        return .failure(GRPCErrors.connectGetQuery("message is not base64"))
      }
      message = decoded
    } else {
      message = Array(text.utf8)
    }
    return .success(GetRequest(json: json, message: message, gzip: gzip))
  }

  /// Whether a request is Connect (see `contentType`).
  static func isConnect(mediaType: String, protocolVersion: String?) -> Bool {
    let (type, unsupported) = Self.contentType(mediaType: mediaType, protocolVersion: protocolVersion)
    return type != nil || unsupported
  }

  /// `Connect-Timeout-Ms`: at most 10 digits.
  static func timeout(_ value: String) -> Duration? {
    guard !value.isEmpty, value.utf8.count <= 10, value.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
      let milliseconds = Int64(value)
    else { return nil }
    return .milliseconds(milliseconds)
  }

  /// Connect's name for a status code.
  static func codeName(_ code: RPCError.Code) -> String {
    switch code {
    case .cancelled: "canceled"
    case .unknown: "unknown"
    case .invalidArgument: "invalid_argument"
    case .deadlineExceeded: "deadline_exceeded"
    case .notFound: "not_found"
    case .alreadyExists: "already_exists"
    case .permissionDenied: "permission_denied"
    case .resourceExhausted: "resource_exhausted"
    case .failedPrecondition: "failed_precondition"
    case .aborted: "aborted"
    case .outOfRange: "out_of_range"
    case .unimplemented: "unimplemented"
    case .internalError: "internal"
    case .unavailable: "unavailable"
    case .dataLoss: "data_loss"
    case .unauthenticated: "unauthenticated"
    default: "unknown"
    }
  }

  /// The error object: `{"code":"not_found","message":"…","details":[{"type":…,"value":…}]}`, the
  /// details from the `grpc-status-details-bin` (a `google.rpc.Status`) of the error or of the
  /// call's `trailers` (where a proxied call's arrives), values in unpadded base64 as Connect writes
  /// them.
  static func errorObject(_ error: RPCError, trailers: HPACKHeaders = [:]) -> JSONObject {
    var object: JSONObject = ["code": .string(Self.codeName(error.code))]
    if !error.message.isEmpty { object.members.append((key: "message", value: .string(error.message))) }
    var details: [JSONValue] = []
    for bytes in StatusDetails.statuses(error.metadata, trailers) {
      for (type, value) in StatusDetails.anys(in: bytes) {
        let name = type.split(separator: "/").last.map(String.init) ?? type
        let text = Data(value).base64EncodedString().replacingOccurrences(of: "=", with: "")
        details.append(.object(["type": .string(name), "value": .string(text)]))
      }
    }
    if !details.isEmpty { object.members.append((key: "details", value: .array(details))) }
    return object
  }
}

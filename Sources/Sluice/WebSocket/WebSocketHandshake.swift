internal import Foundation
internal import NIOHTTP1
internal import SluiceCodec

/// The subprotocol rules of PROTOCOL.md.
enum WebSocketHandshake {
  /// The subprotocol the server echoes when a client offers it.
  static let jsonSubprotocol = "grpc-json.v1"

  /// Subprotocols the client offered, in order.
  static func offeredSubprotocols(_ headers: HTTPHeaders) -> [String] {
    headers["Sec-WebSocket-Protocol"].flatMap { $0.split(separator: ",") }
      .map { $0.trimmingCharacters(in: .whitespaces) }
  }

  /// The token of a `bearer.<base64url token>` subprotocol (browsers cannot set `Authorization`
  /// on a WebSocket), or nil.
  static func bearerToken(in headers: HTTPHeaders) -> String? {
    for offer in Self.offeredSubprotocols(headers) where offer.hasPrefix("bearer.") {
      if let bytes = Base64.decode(String(offer.dropFirst("bearer.".count))),
        let token = String(validating: bytes, as: UTF8.self)
      {
        return token
      }
    }
    return nil
  }

  /// The value of the cookie `name` in the `Cookie` headers (RFC 6265 §4.2: `a=b; c=d`, a value
  /// optionally in double quotes), or nil. Written by hand: NIO has no cookie parser, and these few
  /// lines do not justify a web framework dependency.
  static func cookie(named name: String, in headers: HTTPHeaders) -> String? {
    for header in headers["Cookie"] {
      for pair in header.split(separator: ";") {
        guard let equals = pair.firstIndex(of: "=") else { continue }
        guard pair[..<equals].trimmingCharacters(in: .whitespaces) == name else { continue }
        var value = pair[pair.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
          value = String(value.dropFirst().dropLast())
        }
        return value.isEmpty ? nil : value
      }
    }
    return nil
  }

  /// Headers for the 101 response: `grpc-json.v1` is echoed when offered; a bearer token never is.
  static func responseHeaders(for request: HTTPHeaders) -> HTTPHeaders {
    var headers = HTTPHeaders()
    if Self.offeredSubprotocols(request).contains(Self.jsonSubprotocol) {
      headers.add(name: "Sec-WebSocket-Protocol", value: Self.jsonSubprotocol)
    }
    return headers
  }
}

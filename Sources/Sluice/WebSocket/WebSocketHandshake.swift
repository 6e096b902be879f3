internal import Foundation
internal import GRPCCore
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

  /// The subprotocol of a multiplexed session (on `/`), echoed when offered.
  static let muxSubprotocol = "sluice.mux.v1"

  /// The path of a multiplexed session.
  static let muxPath = "/"

  /// Headers for the 101 response: `grpc-json.v1` (on an RPC's path) or `sluice.mux.v1` (on `/`)
  /// is echoed when offered; a bearer token never is.
  static func responseHeaders(for request: HTTPHeaders, path: String) -> HTTPHeaders {
    var headers = HTTPHeaders()
    let echoed = path == Self.muxPath ? Self.muxSubprotocol : Self.jsonSubprotocol
    if Self.offeredSubprotocols(request).contains(echoed) {
      headers.add(name: "Sec-WebSocket-Protocol", value: echoed)
    }
    return headers
  }

  /// The metadata a handshake's headers give every RPC of its session: `Authorization`,
  /// `grpc-metadata-*` and trace context (`RequestMetadata`), a `bearer.` subprotocol's token, or
  /// the `bearerCookie` (`--bearer-cookie`, when an Origin allow list guards it); and the deadline
  /// of `grpc-timeout`.
  static func metadata(_ headers: HTTPHeaders, bearerCookie: String?) throws(RPCError) -> (Metadata, Duration?) {
    var (metadata, timeout) = try RequestMetadata.from(headers: headers)
    if let token = Self.bearerToken(in: headers) {
      metadata.replaceOrAddString("Bearer \(token)", forKey: "authorization")
    } else if let name = bearerCookie,
      metadata[stringValues: "authorization"].first(where: { _ in true }) == nil,
      let token = Self.cookie(named: name, in: headers)
    {
      metadata.addString("Bearer \(token)", forKey: "authorization")
    }
    return (metadata, timeout)
  }
}

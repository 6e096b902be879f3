import GRPCCore
import NIOHPACK
import SluiceCodec
import Testing

@testable import Sluice

@Suite("Connect's wire format: content types, timeouts, GET queries, error JSON")
struct ConnectProtocolTests {
  @Test("Content types: streaming by connect+, unary proto always, unary JSON only with the version header")
  func contentTypes() {
    let streaming = ConnectProtocol.contentType(mediaType: "application/connect+json", protocolVersion: nil)
    #expect(streaming.0 == ConnectProtocol.ContentType(streaming: true, json: true))
    #expect(
      ConnectProtocol.contentType(mediaType: "application/proto", protocolVersion: nil).0
        == ConnectProtocol.ContentType(streaming: false, json: false))
    #expect(ConnectProtocol.contentType(mediaType: "application/json", protocolVersion: nil).0 == nil)
    #expect(
      ConnectProtocol.contentType(mediaType: "application/json", protocolVersion: "1").0
        == ConnectProtocol.ContentType(streaming: false, json: true))
    let thrift = ConnectProtocol.contentType(mediaType: "application/connect+thrift", protocolVersion: nil)
    #expect(thrift.0 == nil && thrift.unsupported)
    #expect(!ConnectProtocol.isConnect(mediaType: "application/x-ndjson", protocolVersion: "1"))
  }

  @Test("Connect-Timeout-Ms is one to ten digits", arguments: ["", "-1", "1.5", "12345678901", "soon", " 5"])
  func invalidTimeouts(value: String) {
    #expect(ConnectProtocol.timeout(value) == nil)
  }

  @Test("Valid timeouts are milliseconds")
  func timeouts() {
    #expect(ConnectProtocol.timeout("0") == .zero)
    #expect(ConnectProtocol.timeout("1500") == .milliseconds(1500))
    #expect(ConnectProtocol.timeout("9999999999") == .milliseconds(9_999_999_999))
  }

  @Test("A GET's query: the encoding, the message (URL-encoded or base64), the compression")
  func getQueries() throws {
    let json = try ConnectProtocol.getRequest(uri: "/a.B/C?connect=v1&encoding=json&message=%7B%22a%22%3A1%7D").get()
    #expect(json == ConnectProtocol.GetRequest(json: true, message: Array(#"{"a":1}"#.utf8), gzip: false))
    let proto = try ConnectProtocol.getRequest(uri: "/a.B/C?encoding=proto&message=CgNhZGE&base64=1&connect=v1").get()
    #expect(proto == ConnectProtocol.GetRequest(json: false, message: [0x0A, 3, 0x61, 0x64, 0x61], gzip: false))
    for bad in [
      "/a.B/C?connect=v1&message=x", "/a.B/C?connect=v1&encoding=xml&message=x", "/a.B/C?connect=v1&encoding=json",
      "/a.B/C?connect=v1&encoding=proto&base64=1&message=!!",
      "/a.B/C?connect=v1&encoding=json&message=x&compression=br",
    ] {
      guard case .failure = ConnectProtocol.getRequest(uri: bad) else {
        Issue.record("\(bad) was accepted")
        continue
      }
    }
  }

  @Test("Every code has Connect's name")
  func codeNames() {
    #expect(ConnectProtocol.codeName(.cancelled) == "canceled")
    #expect(ConnectProtocol.codeName(.internalError) == "internal")
    #expect(ConnectProtocol.codeName(.invalidArgument) == "invalid_argument")
    #expect(ConnectProtocol.codeName(.unauthenticated) == "unauthenticated")
  }

  @Test("Error details come from grpc-status-details-bin, in the error or in the trailers")
  func details() {
    // google.rpc.Status{code: 5, message: "m", details: [Any{type_url: "type.googleapis.com/x.Y", value: [1, 2]}]}
    let any: [UInt8] = [0x0A, 23] + Array("type.googleapis.com/x.Y".utf8) + [0x12, 2, 1, 2]
    let status: [UInt8] = [0x08, 5, 0x12, 1, 0x6D, 0x1A, UInt8(any.count)] + any
    let error = RPCError(code: .notFound, message: "m", metadata: ["grpc-status-details-bin": .binary(status)])
    let object = ConnectProtocol.errorObject(error)
    #expect(
      JSONValue.object(object).serializedBytes
        == Array(#"{"code":"not_found","message":"m","details":[{"type":"x.Y","value":"AQI"}]}"#.utf8))
    let fromTrailers = ConnectProtocol.errorObject(
      RPCError(code: .notFound, message: "m"),
      trailers: ["grpc-status-details-bin": "CAUSAW0aHQoXdHlwZS5nb29nbGVhcGlzLmNvbS94LlkSAgEC"])
    #expect(JSONValue.object(fromTrailers).serializedBytes == JSONValue.object(object).serializedBytes)
  }

  @Test("Malformed status bytes from an upstream give no details, never a trap")
  func malformedDetails() {
    let cases: [[UInt8]] = [
      [0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], [0x1A, 10, 1], [0xFF], [0x1A],
      [0x1A, 3, 0x0A, 9, 0x41], Array(repeating: 0x80, count: 20), [0x0F, 1, 2, 3],
    ]
    for bytes in cases {
      for (type, _) in StatusDetails.anys(in: bytes) { #expect(type.utf8.count < 10) }
    }
    #expect(StatusDetails.anys(in: [0x1A, 10, 1]).isEmpty)
  }
}

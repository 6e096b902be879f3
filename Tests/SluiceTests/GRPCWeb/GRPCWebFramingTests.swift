import Foundation
import GRPCCore
import NIOCore
import NIOHPACK
import NIOHTTP1
import Testing

@testable import Sluice

@Suite("gRPC-Web's wire format: content types, the text decoder, the trailer frame")
struct GRPCWebFramingTests {
  @Test(
    "Content types pick the text and JSON forms; other codecs are not gRPC-Web's",
    arguments: [
      ("application/grpc-web", false, false), ("application/grpc-web+proto", false, false),
      ("application/grpc-web+json", false, true), ("application/grpc-web-text", true, false),
      ("application/grpc-web-text+proto", true, false), ("application/grpc-web-text+json", true, true),
    ])
  func contentTypes(mediaType: String, text: Bool, json: Bool) {
    #expect(GRPCWebFraming.contentType(mediaType) == GRPCWebFraming.ContentType(text: text, json: json))
    #expect(GRPCWebFraming.isGRPCWeb(mediaType))
  }

  @Test(
    "Unknown codecs and near misses are refused", arguments: ["application/grpc-web+thrift", "application/grpc-webx"])
  func unknownCodecs(mediaType: String) {
    #expect(GRPCWebFraming.contentType(mediaType) == nil)
  }

  @Test("The media type a Content-Type names ignores parameters and case")
  func mediaType() {
    let request = HTTPExchangeRequest(
      method: .POST, uri: "/a.B/C?x=1", headers: ["Content-Type": " Application/GRPC-Web-Text ; charset=utf-8"])
    #expect(request.mediaType == "application/grpc-web-text")
    #expect(request.path == "/a.B/C")
  }

  @Test("An HTTP/2 header block becomes a request: pseudo-headers out, :authority as Host")
  func http2Request() throws {
    let headers: HPACKHeaders = [
      ":method": "POST", ":scheme": "https", ":path": "/a.B/C", ":authority": "example.com",
      "content-type": "application/grpc-web", "x-a": "1",
    ]
    let request = try #require(HTTPExchangeRequest(http2: headers))
    #expect(request.method == .POST)
    #expect(request.headers.first(name: "Host") == "example.com")
    #expect(request.headers.first(name: "x-a") == "1")
    #expect(!request.headers.contains { $0.name.hasPrefix(":") })
    #expect(HTTPExchangeRequest(http2: [":method": "POST"]) == nil)
  }

  @Test("Base64 arrives in any chunks, with padding at the end of any group")
  func textDecoder() {
    let one: [UInt8] = Array("a message".utf8)  // 9 bytes: no padding
    let two: [UInt8] = Array("pad".utf8) + [0]  // 4 bytes: padded
    let three: [UInt8] = Array("end!".utf8)
    let text = Array(
      (Data(two).base64EncodedString() + Data(one).base64EncodedString() + Data(three).base64EncodedString()).utf8)
    #expect(text.contains(UInt8(ascii: "=")))
    for split in 0...text.count {
      var decoder = GRPCWebTextDecoder()
      var output: [UInt8] = []
      for chunk in [text[..<split], text[split...]] {
        guard let decoded = decoder.decode(ByteBuffer(bytes: Array(chunk))) else {
          Issue.record("valid base64 refused when split at \(split)")
          return
        }
        output += decoded
      }
      #expect(!decoder.hasPartialGroup)
      #expect(output == two + one + three, "split at \(split)")
    }
  }

  @Test("Bytes that are not base64, and padding inside a group, are refused; a cut-short group is partial")
  func textDecoderRefuses() {
    var decoder = GRPCWebTextDecoder()
    #expect(decoder.decode(ByteBuffer(string: "AA!A")) == nil)
    decoder = GRPCWebTextDecoder()
    #expect(decoder.decode(ByteBuffer(string: "A=AA")) == nil)
    decoder = GRPCWebTextDecoder()
    #expect(decoder.decode(ByteBuffer(string: "QUJD\r\nRA")) == Array("ABC".utf8))
    #expect(decoder.hasPartialGroup)
  }

  @Test("The trailer frame: flag 0x80, then the status and trailers as lowercase `key: value` lines")
  func trailerFrame() {
    var frame = GRPCWebFraming.trailerFrame(
      RPCError(code: .notFound, message: "no 100% widget"), trailers: ["X-Extra": "1"], allocator: ByteBufferAllocator()
    )
    #expect(frame.readInteger(as: UInt8.self) == 0x80)
    let length = frame.readInteger(as: UInt32.self)
    #expect(length.map(Int.init) == frame.readableBytes)
    #expect(
      frame.readString(length: frame.readableBytes)
        == "grpc-status: 5\r\ngrpc-message: no 100%25 widget\r\nx-extra: 1\r\n")
  }

  @Test("Metadata: every request header but hop-by-hop ones, the body's length and the gateway's own")
  func metadata() {
    let request = HTTPExchangeRequest(
      method: .POST, uri: "/a.B/C",
      headers: [
        "Host": "h", "Connection": "keep-alive", "Content-Length": "5", "Content-Type": "application/grpc-web",
        "X-Grpc-Web": "1", "Sluice-Rpc-Id": "forged", "Proxy-Authorization": "x", "Authorization": "Bearer t",
      ])
    let metadata = request.callMetadata(path: "/a.B/C", secure: true)
    #expect(metadata.first(name: ":authority") == "h")
    #expect(metadata.first(name: ":scheme") == "https")
    #expect(metadata.first(name: ":path") == "/a.B/C")
    #expect(metadata.first(name: "x-grpc-web") == "1")
    #expect(metadata.first(name: "authorization") == "Bearer t")
    for absent in ["host", "connection", "content-length", "sluice-rpc-id", "proxy-authorization"] {
      #expect(metadata.first(name: absent) == nil, "\(absent)")
    }
  }
}

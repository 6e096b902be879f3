internal import Foundation
internal import GRPCCore
internal import NIOCore
internal import NIOHPACK
internal import SluiceCodec

/// gRPC-Web's wire format (gRPC's PROTOCOL-WEB): gRPC's length-prefixed messages, the status as a
/// last frame flagged 0x80 instead of HTTP trailers, and a base64 text form for clients that
/// cannot read binary bodies.
enum GRPCWebFraming {
  /// The flag bit of the frame that carries the trailers.
  static let trailerFlag: UInt8 = 0x80

  /// What a request's content type asks for.
  struct ContentType: Equatable {
    /// `application/grpc-web-text`: the body is base64.
    var text: Bool
    /// `+json`: messages are proto3 JSON (through the gateway's codec) rather than protobuf.
    var json: Bool

    /// The content type of the response.
    var mediaType: String {
      (self.text ? "application/grpc-web-text" : "application/grpc-web") + (self.json ? "+json" : "+proto")
    }
  }

  /// `application/grpc-web[-text][+proto|+json]` (a media type as `HTTPCall.mediaType` gives it);
  /// nil for anything else, including other `+` codecs.
  static func contentType(_ mediaType: String) -> ContentType? {
    var rest = Substring(mediaType)
    guard rest.hasPrefix("application/grpc-web") else { return nil }
    rest = rest.dropFirst("application/grpc-web".count)
    let text = rest.hasPrefix("-text")
    if text { rest = rest.dropFirst("-text".count) }
    switch rest {
    case "", "+proto": return ContentType(text: text, json: false)
    case "+json": return ContentType(text: text, json: true)
    default: return nil
    }
  }

  /// Whether a request is gRPC-Web, by its media type.
  static func isGRPCWeb(_ mediaType: String) -> Bool {
    mediaType.hasPrefix("application/grpc-web")
  }

  /// The trailer frame: the status and the trailing metadata as an HTTP/1.1 header block
  /// (`key: value\r\n`, lowercase keys), behind the five-byte prefix with the trailer flag.
  static func trailerFrame(_ error: RPCError?, trailers: HPACKHeaders, allocator: ByteBufferAllocator) -> ByteBuffer {
    var fields = HPACKHeaders()
    GRPCServerStreamState.addStatus(error, to: &fields)
    fields.add(contentsOf: trailers)
    var block = allocator.buffer(capacity: 64)
    for (name, value, _) in fields {
      block.writeString(name.lowercased())
      block.writeString(": ")
      block.writeString(value)
      block.writeString("\r\n")
    }
    var frame = allocator.buffer(capacity: block.readableBytes + 5)
    frame.writeInteger(Self.trailerFlag)
    frame.writeInteger(UInt32(truncatingIfNeeded: block.readableBytes))
    frame.writeBuffer(&block)
    return frame
  }

  /// `bytes` as base64 text, padded: each write of a text response is encoded on its own, which
  /// PROTOCOL-WEB allows (padding may appear mid-stream).
  static func base64(_ bytes: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
    let text = Data(bytes.readableBytesView).base64EncodedData()
    return allocator.buffer(bytes: text)
  }
}

/// Decodes a `application/grpc-web-text` request body as it arrives: base64 in any chunks, padding
/// allowed at the end of any group of four (a client may encode each message on its own).
///
/// Written by hand: Foundation decodes whole strings only, and a body split across reads must not be
/// held until it ends.
struct GRPCWebTextDecoder {
  /// Base64 digits not yet decoded (fewer than four).
  private var carry: [UInt8] = []

  /// Whether digits are left over (the body must not end then).
  var hasPartialGroup: Bool { !self.carry.isEmpty }

  /// The bytes of every complete group in `chunk` (with what was carried over), or nil for a
  /// byte that is not base64. Line breaks and spaces are skipped.
  mutating func decode(_ chunk: ByteBuffer) -> [UInt8]? {
    var digits = self.carry
    digits.reserveCapacity(digits.count + chunk.readableBytes)
    for byte in chunk.readableBytesView {
      switch byte {
      case UInt8(ascii: "\r"), UInt8(ascii: "\n"), UInt8(ascii: " "), UInt8(ascii: "\t"): continue
      default: digits.append(byte)
      }
    }
    let whole = digits.count - digits.count % 4
    self.carry = Array(digits[whole...])
    var output: [UInt8] = []
    output.reserveCapacity(whole / 4 * 3)
    var start = 0
    var index = 0
    // Groups are decoded in runs that end with a padded group, so padding mid-stream is allowed.
    while index < whole {
      let padded = digits[index + 3] == UInt8(ascii: "=")
      index += 4
      if padded || index == whole {
        guard let text = String(bytes: digits[start..<index], encoding: .ascii), let bytes = Base64.decode(text)
        else { return nil }
        output += bytes
        start = index
      }
    }
    return output
  }
}

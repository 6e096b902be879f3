internal import Foundation
internal import NIOCore

/// Whole-body and per-message gzip for the HTTP protocols' responses (HTTP JSON's single
/// responses, Connect's): whether the client reads gzip, and whether a body is worth compressing.
enum ResponseCompression {
  /// The smallest body worth compressing (connect-go's default).
  static let threshold = 1024

  /// Whether `Accept-Encoding`-style header values list gzip (case-insensitive; parameters such
  /// as `;q=` are ignored).
  static func acceptsGzip(_ values: some Sequence<String>) -> Bool {
    values.contains { list in
      list.split(separator: ",").contains {
        $0.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() == "gzip"
      }
    }
  }

  /// `bytes` as gzip when the client `accepts` it and they reach `threshold`; nil to send them as
  /// they are (zlib failing included).
  static func gzipped(_ bytes: [UInt8], accepts: Bool, allocator: ByteBufferAllocator) -> ByteBuffer? {
    guard accepts, bytes.count >= Self.threshold else { return nil }
    return GzipMessage.deflate(bytes, allocator: allocator)
  }
}

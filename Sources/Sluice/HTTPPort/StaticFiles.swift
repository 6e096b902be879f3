internal import Foundation
internal import NIOCore
internal import NIOFileSystem
internal import NIOHTTP1
internal import SluicePublicFiles

/// The files of `public/` (PROTOCOL.md: `GET /` serves it): the browser page and its scripts,
/// built into the binary (`scripts/embed-public.sh`), or read from a folder (`--public-dir`).
struct StaticFiles: Sendable {
  private enum Source: Sendable {
    case directory(String)
    case embedded([String: ByteBuffer])
  }

  private let source: Source

  /// The files of a folder, read on each request (edits show without a restart).
  init(root: String) {
    self.source = .directory(root)
  }

  /// The copy of `public/` built into the binary: served from any working directory.
  static let embedded = StaticFiles(
    embedded: EmbeddedPublicFiles.base64.compactMapValues { text in
      Data(base64Encoded: text).map { ByteBuffer(bytes: $0) }
    }
  )

  private init(embedded files: [String: ByteBuffer]) {
    self.source = .embedded(files)
  }

  /// The largest file served.
  static let maxFileBytes = 16 << 20

  /// Content types by file extension; anything else is `application/octet-stream`.
  static let contentTypes: [Substring: String] = [
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "mjs": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "json": "application/json",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
    "txt": "text/plain; charset=utf-8",
  ]

  /// The file at a request path (`/` is `index.html`), or nil when there is none. Paths with
  /// anything but letters, digits, `-`, `_`, `.` and `/`, or with a segment starting with `.`,
  /// are never looked up, so nothing outside the folder can be reached.
  func file(at path: String) async -> (contentType: String, body: ByteBuffer)? {
    let relative = path == "/" ? "index.html" : String(path.dropFirst())
    let segments = relative.split(separator: "/", omittingEmptySubsequences: false)
    guard path.hasPrefix("/"), !segments.isEmpty,
      segments.allSatisfy({ !$0.isEmpty && !$0.hasPrefix(".") }),
      relative.unicodeScalars.allSatisfy({ Self.isAllowed($0) })
    else { return nil }
    let ext = segments.last?.split(separator: ".").last ?? ""
    let contentType = Self.contentTypes[ext] ?? "application/octet-stream"
    switch self.source {
    case .embedded(let files):
      return files[relative].map { (contentType, $0) }
    case .directory(let root):
      do {
        let body = try await ByteBuffer(
          contentsOf: FilePath("\(root)/\(relative)"),
          maximumSizeAllowed: .bytes(Int64(Self.maxFileBytes))
        )
        return (contentType, body)
      } catch {
        return nil  // missing, a folder, or too large
      }
    }
  }

  private static func isAllowed(_ scalar: Unicode.Scalar) -> Bool {
    scalar.properties.isASCIIHexDigit || ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
      || "-_./".unicodeScalars.contains(scalar)
  }
}

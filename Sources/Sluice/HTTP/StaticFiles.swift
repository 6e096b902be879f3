internal import NIOCore
internal import NIOFileSystem
internal import NIOHTTP1

/// The files of `public/` (PROTOCOL.md: `GET /` serves it): the browser page and its scripts.
struct StaticFiles: Sendable {
  /// The folder served.
  let root: String

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
    do {
      let body = try await ByteBuffer(
        contentsOf: FilePath("\(self.root)/\(relative)"),
        maximumSizeAllowed: .bytes(Int64(Self.maxFileBytes))
      )
      let ext = segments.last?.split(separator: ".").last ?? ""
      return (Self.contentTypes[ext] ?? "application/octet-stream", body)
    } catch {
      return nil  // missing, a folder, or too large
    }
  }

  private static func isAllowed(_ scalar: Unicode.Scalar) -> Bool {
    scalar.properties.isASCIIHexDigit || ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
      || "-_./".unicodeScalars.contains(scalar)
  }
}

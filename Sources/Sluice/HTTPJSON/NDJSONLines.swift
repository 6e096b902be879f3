internal import NIOCore

/// Splits a request body into NDJSON lines as its chunks arrive, holding at most one unfinished
/// line of at most `maxLineBytes`.
///
/// Written by hand: NIOExtras' `LineBasedFrameDecoder` is a channel handler, and here the body
/// arrives as HTTP body parts after the HTTP decoder, mixed with request heads.
struct NDJSONLines {
  let maxLineBytes: Int
  private var partial: [UInt8] = []

  init(maxLineBytes: Int) {
    self.maxLineBytes = maxLineBytes
  }

  enum Failure: Error {
    /// A line grew past `maxLineBytes` before its newline.
    case lineTooLong
  }

  /// The lines completed by `chunk` (without their `\n`); the rest is kept for the next chunk.
  mutating func append(_ chunk: ByteBuffer) throws(Failure) -> [[UInt8]] {
    var lines: [[UInt8]] = []
    let bytes = chunk.readableBytesView
    var start = bytes.startIndex
    while let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
      self.partial.append(contentsOf: bytes[start..<newline])
      try self.checkLength()
      lines.append(self.partial)
      self.partial.removeAll(keepingCapacity: true)
      start = bytes.index(after: newline)
    }
    self.partial.append(contentsOf: bytes[start...])
    try self.checkLength()
    return lines
  }

  /// The bytes of the unfinished line held for the next chunk.
  var pendingBytes: Int { self.partial.count }

  /// The last line, when the body did not end with a newline.
  mutating func finish() -> [UInt8]? {
    defer { self.partial = [] }
    return self.partial.isEmpty ? nil : self.partial
  }

  /// Whether a line is blank (spaces, tabs, a `\r`): it separates nothing and is not a message.
  static func isBlank(_ line: [UInt8]) -> Bool {
    line.allSatisfy { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") }
  }

  private func checkLength() throws(Failure) {
    if self.partial.count > self.maxLineBytes { throw .lineTooLong }
  }
}

internal import ArgumentParser
internal import Foundation
internal import GRPCCore
internal import Logging
import Sluice
internal import Synchronization

/// The options `call`, `list` and `describe` share: where the server is and how to reach it.
struct ConnectionOptions: ParsableArguments {
  @Argument(help: "The server: HOST:PORT ([::1]:8888 for IPv6). A gateway's HTTP port for --via ws|http.")
  var address: String

  @Flag(
    help: "Connect over TLS (https, wss, gRPC with ALPN h2), verifying the server against the system's roots or --ca.")
  var tls = false

  @Option(help: "PEM certificates to trust for --tls instead of the system's roots.")
  var ca: String?

  @Option(
    name: [.customShort("H"), .customLong("header")],
    help: ArgumentHelp("Request metadata, 'key: value'; repeatable.", valueName: "key: value")
  )
  var headers: [String] = []

  @Option(
    help: ArgumentHelp(
      "A FileDescriptorSet (protoc --include_imports --descriptor_set_out) to use instead of asking the server over reflection; repeatable.",
      valueName: "file"
    )
  )
  var descriptorSet: [String] = []

  func validate() throws {
    _ = try self.target()
    _ = try self.metadata()
    if self.ca != nil && !self.tls { throw ValidationError("--ca needs --tls.") }
  }

  /// The address, parsed.
  func target() throws -> UpstreamAddress {
    do {
      return try UpstreamAddress(parsing: self.address)
    } catch {
      throw ValidationError(error.description)
    }
  }

  /// The `-H` values as (lowercased key, value) pairs.
  func metadata() throws -> [(String, String)] {
    try self.headers.map { header in
      guard let colon = header.firstIndex(of: ":") else {
        throw ValidationError("-H '\(header)' is not 'key: value'.")
      }
      let key = header[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
      let value = header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces)
      guard !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) })
      else {
        throw ValidationError("-H '\(header)': '\(key)' is not a metadata key (letters, digits, - _ .).")
      }
      return (key, value)
    }
  }

  /// The descriptors of `--descriptor-set`, or those the server describes over reflection
  /// (`grpc.reflection.v1`, then `v1alpha`) for `service` (nil: every service it lists).
  func descriptors(for service: String?) async throws -> ClientDescriptors {
    if !self.descriptorSet.isEmpty {
      let sets = try self.descriptorSet.map { path in
        guard let data = FileManager.default.contents(atPath: path) else {
          throw CallStatus(.invalidArgument, "--descriptor-set: cannot read \(path)")
        }
        return [UInt8](data)
      }
      return try ClientDescriptors(fileDescriptorSets: sets, services: nil)
    }
    let route = UpstreamRoute(service: service ?? "*", addresses: [try self.target()])
    let description: UpstreamReflection.Description
    do {
      description = try await UpstreamReflection.describe(
        route, tls: self.tls ? UpstreamTLS(caPath: self.ca) : nil,
        logger: Logger(label: "sluice.client", factory: { _ in SwiftLogNoOpLogHandler() }),
        includingReflection: service == nil)
    } catch let error as RPCError {
      throw CallStatus(error.code, "server reflection at \(self.address): \(error.message)")
    } catch {
      throw CallStatus(.unavailable, "server reflection at \(self.address): \(error)")
    }
    return try ClientDescriptors(fileDescriptorSets: [description.fileDescriptorSet], services: description.services)
  }
}

/// A method as the commands take it: `pkg.Service/Method`, `/pkg.Service/Method` or
/// `pkg.Service.Method` (grpcurl's spelling).
struct MethodName {
  /// As given.
  let text: String
  /// `pkg.Service`, or nil when the name has neither `/` nor `.`.
  let service: String?
  let method: String

  init(_ text: String) {
    self.text = text
    let trimmed = text.hasPrefix("/") ? String(text.dropFirst()) : text
    if let slash = trimmed.firstIndex(of: "/") {
      self.service = String(trimmed[..<slash])
      self.method = String(trimmed[trimmed.index(after: slash)...])
    } else if let dot = trimmed.lastIndex(of: ".") {
      self.service = String(trimmed[..<dot])
      self.method = String(trimmed[trimmed.index(after: dot)...])
    } else {
      self.service = nil
      self.method = trimmed
    }
  }

  /// `/pkg.Service/Method`, as gRPC and the gateway's JSON paths name it.
  var path: String {
    self.service.map { "/\($0)/\(self.method)" } ?? "/\(self.method)"
  }
}

/// One `sluice call`, as each transport (`GRPCCall`, `WebSocketCall`, `HTTPCallClient`) takes it.
struct CallRequest {
  var connection: ConnectionOptions
  var method: MethodName
  /// The request messages as JSON lines, as they are read.
  var requests: AsyncStream<String>
  var timeout: TimeoutValue?
  /// `-v`: the response headers and trailers go to stderr.
  var verbose: Bool
}

/// What `--via ws` and `--via http` share: the request headers a gateway reads as metadata, and
/// its control objects (PROTOCOL.md: `$headers`, `$end`) in WebSocket frames and NDJSON lines.
enum GatewayJSON {
  /// `-H` values as the gateway reads them (`grpc-metadata-<key>`, `Authorization`), and
  /// `--timeout` as `grpc-timeout`.
  static func headers(_ connection: ConnectionOptions, timeout: TimeoutValue?) throws -> [(String, String)] {
    var headers = try connection.metadata().map { key, value in
      (key == "authorization" ? "Authorization" : "grpc-metadata-\(key)", value)
    }
    if let timeout { headers.append(("grpc-timeout", timeout.grpcTimeout)) }
    return headers
  }

  /// The object of a control frame or line (its first key starts with `$`), or nil for a message.
  static func control(_ text: String) -> [String: Any]? {
    guard text.hasPrefix(#"{"$"#) else { return nil }
    return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
  }

  /// The status a `$end` object holds; with `-v` its trailers go to stderr.
  static func status(ofEnd end: [String: Any], verbose: Bool) -> CallStatus {
    if verbose, let trailers = end["trailers"] as? [String: Any] { Self.print("trailers", trailers) }
    return CallStatus(code: (end["code"] as? Int) ?? 2, (end["message"] as? String) ?? "")
  }

  /// Metadata as JSON shows it (`{"k":["v"]}`), one `what: key: value` line per value, on stderr.
  static func print(_ what: String, _ metadata: [String: Any]) {
    for (key, values) in metadata.sorted(by: { $0.key < $1.key }) {
      for value in (values as? [Any]) ?? [values] { ClientOutput.note("\(what): \(key): \(value)") }
    }
  }
}

/// A gRPC status as the client reports it: the exit code is the code, and the status goes to
/// stderr as `NAME: message`.
struct CallStatus: Error {
  var code: Int
  var message: String

  init(code: Int, _ message: String) {
    self.code = code
    self.message = message
  }

  init(_ code: RPCError.Code, _ message: String) {
    self.init(code: code.rawValue, message)
  }
}

/// gRPC's status codes by their canonical names, as the client prints them.
enum StatusNames {
  private static let names = [
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
  ]

  /// The name of `code`, or `CODE <n>` for one outside gRPC's list.
  static func name(of code: Int) -> String {
    names.indices.contains(code) ? names[code] : "CODE \(code)"
  }
}

/// Writes what a command prints: messages to stdout, one per line, flushed as each arrives (a
/// pipe sees every line at once); the status and `-v`'s headers and trailers to stderr. Every line
/// goes through `escaped(_:)`: most of what is printed comes from the server.
///
/// Writes go through the throwing `FileHandle.write(contentsOf:)`: the older `write(_:)` traps on
/// any error, and SwiftNIO ignores SIGPIPE process-wide, so a reader that closes the pipe
/// (`sluice call … | head -1`) makes the write fail with EPIPE rather than end the process.
enum ClientOutput {
  /// The exit code when standard output's reader has gone: the shell's code for a process
  /// SIGPIPE ended, which is how `cat` or `grep` end in the same place.
  static let closedOutputExitCode: Int32 = 141

  static func line(_ text: String) {
    Self.standardOutput(Self.escaped(text) + "\n")
  }

  /// `text` with each character a terminal acts on instead of showing it (C0 controls but tab,
  /// DEL and C1 controls: ESC, CSI, OSC, a carriage return…) written as a visible `\u001b`, so
  /// that a server's names, messages and metadata cannot recolour, retitle or rewrite the
  /// terminal, nor add lines of their own. The escape is JSON's: in a compact JSON line these
  /// characters can only be inside strings, where it keeps the line valid JSON of the same value
  /// (the codec writes DEL and C1 unescaped, as JSON allows).
  static func escaped(_ text: some StringProtocol) -> String {
    func isControl(_ scalar: Unicode.Scalar) -> Bool {
      (scalar.value < 0x20 && scalar != "\t") || (0x7F...0x9F).contains(scalar.value)
    }
    guard text.unicodeScalars.contains(where: isControl) else { return String(text) }
    var escaped = ""
    for scalar in text.unicodeScalars {
      guard isControl(scalar) else {
        escaped.unicodeScalars.append(scalar)
        continue
      }
      let hex = String(scalar.value, radix: 16)
      escaped += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    }
    return escaped
  }

  /// Writes `text` to stdout. When that fails the command cannot go on: it ends at once, quietly
  /// with `closedOutputExitCode` for a closed pipe, with a note and EX_IOERR (74) for another
  /// error.
  static func standardOutput(_ text: String) {
    do {
      try FileHandle.standardOutput.write(contentsOf: Data(text.utf8))
    } catch {
      let posix = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
      if posix?.domain == NSPOSIXErrorDomain, posix?.code == Int(EPIPE) {
        Foundation.exit(Self.closedOutputExitCode)
      }
      Self.standardError("sluice: cannot write to standard output: \(posix ?? error as NSError)\n")
      Foundation.exit(74)
    }
  }

  /// Writes `text` to stderr; a failure is ignored (there is nowhere left to report it).
  static func standardError(_ text: String) {
    try? FileHandle.standardError.write(contentsOf: Data(text.utf8))
  }

  static func status(_ code: Int, _ message: String) {
    let text = message.isEmpty ? StatusNames.name(of: code) : "\(StatusNames.name(of: code)): \(message)"
    Self.note(text)
  }

  /// Runs a command's `body`; a status it throws goes to stderr and becomes the exit code.
  static func reportingStatus(_ body: () async throws -> Void) async throws {
    do {
      try await body()
    } catch let status as CallStatus {
      Self.status(status.code, status.message)
      throw ExitCode(Int32(clamping: status.code))
    }
  }

  /// Writes one line to stderr, escaped.
  static func note(_ text: String) {
    Self.standardError(Self.escaped(text) + "\n")
  }
}

/// Standard input's lines as they are read, for streams typed or piped line by line. Empty
/// lines are skipped. A thread of its own blocks in `readLine`: the C library returns each line as
/// soon as its newline arrives, so nothing waits for a buffer to fill.
enum StandardInputLines {
  static func stream() -> AsyncStream<String> {
    let (stream, continuation) = AsyncStream.makeStream(of: String.self)
    let thread = Thread {
      while let line = readLine(strippingNewline: true) {
        if line.allSatisfy(\.isWhitespace) { continue }
        continuation.yield(line)
      }
      continuation.finish()
    }
    thread.start()
    return stream
  }
}

/// `--timeout` kept on the client's side for `--via ws|http`. The gateway ends a call at its
/// `grpc-timeout`, but only once it has the call: a gateway that refuses the connection makes
/// async-http-client retry until its own 10-second connect timeout, and a server that accepts and
/// never answers would hold the command for good. grpc-swift keeps the deadline itself for
/// `--via grpc`.
enum CallDeadline {
  /// The outcome of `body`, or DEADLINE_EXCEEDED once `timeout` has passed (the call is then
  /// cancelled, and the command ends without waiting for it).
  static func keep(
    _ timeout: TimeoutValue?,
    _ body: sending @escaping () async throws -> CallStatus
  ) async throws -> CallStatus {
    guard let timeout else { return try await body() }
    let (outcomes, sink) = AsyncStream.makeStream(of: Result<CallStatus, any Error>.self)
    let call = Task {
      do { sink.yield(.success(try await body())) } catch { sink.yield(.failure(error)) }
    }
    let timer = Task {
      try await Task.sleep(for: timeout.duration)
      call.cancel()
      sink.yield(.success(CallStatus(.deadlineExceeded, "no status within --timeout \(timeout.duration)")))
    }
    defer { timer.cancel() }
    for await outcome in outcomes { return try outcome.get() }
    return CallStatus(.cancelled, "the command was cancelled")
  }
}

/// A `--timeout` value: a number with a unit (`500ms`, `5s`, `2m`, `1h`; seconds without one).
struct TimeoutValue: ExpressibleByArgument {
  var duration: Duration

  init?(argument: String) {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    var number = Substring(argument)
    var scale = 1.0
    for (suffix, factor) in units where argument.hasSuffix(suffix) {
      number = argument.dropLast(suffix.count)
      scale = factor
      break
    }
    guard let value = Double(number), value.isFinite, value > 0, value * scale <= 31_536_000 else { return nil }
    self.duration = .milliseconds(Int64((value * scale * 1000).rounded(.up)))
  }

  /// As a `grpc-timeout` header value (milliseconds).
  var grpcTimeout: String {
    let (seconds, attoseconds) = self.duration.components
    return "\(seconds * 1000 + attoseconds / 1_000_000_000_000_000)m"
  }
}

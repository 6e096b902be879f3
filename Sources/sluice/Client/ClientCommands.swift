public import ArgumentParser
internal import Foundation
internal import GRPCCore

/// `sluice call`: one RPC, JSON in and out, over native gRPC or a gateway's JSON paths.
struct CallCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "call",
    abstract: "Call a method with JSON: `sluice call 127.0.0.1:8888 hello.UserService/SayHi -d '{\"name\":\"ada\"}'`.",
    discussion: """
      Without -d, request messages are read from stdin, one JSON object per line, each sent as it \
      is read (a bidirectional stream is a conversation at the terminal); the end of input is the \
      half-close. Responses print one JSON object per line as they arrive; the status goes to \
      stderr (`OK`, or `NOT_FOUND: message`) and the exit code is its gRPC code. \
      --via grpc (the default) needs the method's descriptors: from the server's reflection, or \
      --descriptor-set. --via ws and --via http go through a Sluice gateway's HTTP port, which \
      translates the JSON itself.
      """
  )

  enum Via: String, ExpressibleByArgument, CaseIterable {
    case grpc, ws, http
  }

  @OptionGroup var connection: ConnectionOptions

  @Argument(help: "The method: pkg.Service/Method (or pkg.Service.Method).")
  var method: String

  @Option(help: "How to reach the server: grpc (native gRPC), ws (a gateway's WebSocket/JSON) or http (its HTTP JSON).")
  var via: Via = .grpc

  @Flag(
    help: "With --via ws: call as one stream of a multiplexed session (on /), not a socket on the method's path."
  )
  var mux = false

  @Option(
    name: [.customShort("d"), .customLong("data")],
    help: "The request: one JSON object, or several, one per line (NDJSON). Without it, stdin.")
  var data: String?

  @Option(
    help:
      "The call's deadline: 500ms, 5s, 2m (seconds without a unit); sent as grpc-timeout, and kept here for a server that does not answer."
  )
  var timeout: TimeoutValue?

  @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Print the response headers and trailers to stderr.")
  var verbose = false

  func validate() throws {
    if self.mux, self.via != .ws { throw ValidationError("--mux needs --via ws.") }
  }

  func run() async throws {
    let requests: AsyncStream<String>
    if let data = self.data {
      let lines = data.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.allSatisfy(\.isWhitespace) }
      requests = AsyncStream { continuation in
        for line in lines { continuation.yield(line) }
        continuation.finish()
      }
    } else {
      requests = StandardInputLines.stream()
    }
    let call = CallRequest(
      connection: self.connection, method: MethodName(self.method), requests: requests, timeout: self.timeout,
      verbose: self.verbose)
    let outcome: CallStatus
    do {
      switch self.via {
      case .grpc: outcome = try await GRPCCall.run(call)
      case .ws: outcome = try await CallDeadline.keep(self.timeout) { try await WebSocketCall.run(call, mux: self.mux) }
      case .http: outcome = try await CallDeadline.keep(self.timeout) { try await HTTPCallClient.run(call) }
      }
    } catch let failure as CallStatus {
      outcome = failure
    }
    ClientOutput.status(outcome.code, outcome.message)
    throw ExitCode(Int32(clamping: outcome.code))
  }
}

/// `sluice list`: the services of a server, or the methods of one, from its reflection.
struct ListCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "list",
    abstract: "List a server's services, or one service's methods (server reflection, or --descriptor-set).")

  @OptionGroup var connection: ConnectionOptions

  @Argument(help: "A service (pkg.Service): list its methods instead.")
  var service: String?

  func run() async throws {
    try await ClientOutput.reportingStatus {
      let descriptors = try await self.connection.descriptors(for: self.service)
      guard let service = self.service else {
        for name in descriptors.services { ClientOutput.line(name) }
        return
      }
      guard let methods = descriptors.methods(of: service) else {
        throw CallStatus(.notFound, "no service \(service)")
      }
      for method in methods { ClientOutput.line(method) }
    }
  }
}

/// `sluice describe`: a service, method, message or enum as proto source.
struct DescribeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "describe",
    abstract: "Show a service, method, message or enum as proto source (server reflection, or --descriptor-set).")

  @OptionGroup var connection: ConnectionOptions

  @Argument(help: "A full name: pkg.Service, pkg.Service.Method, pkg.Message or pkg.Enum.")
  var symbol: String

  func run() async throws {
    try await ClientOutput.reportingStatus {
      let descriptors = try await self.connection.descriptors(for: nil)
      guard let text = descriptors.describe(self.symbol) else {
        throw CallStatus(.notFound, "no symbol \(self.symbol)")
      }
      // The names are the server's: every line is escaped (a name never holds a line break, as
      // the descriptors load only with identifiers for names).
      for line in text.split(separator: "\n") { ClientOutput.line(String(line)) }
    }
  }
}

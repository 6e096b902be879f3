public import ArgumentParser
internal import Foundation

/// `sluice`: the gateway (`serve`, the default) and the command-line client for any gRPC server or
/// Sluice gateway (`call`, `list`, `describe`), and `openapi`.
@main
struct SluiceCommand: AsyncParsableCommand {
  /// The release, as `sluice --version` prints it.
  static let version = "0.6.0"

  static let configuration = CommandConfiguration(
    commandName: "sluice",
    abstract: "A gRPC gateway for browsers and scripts, and a command-line client for gRPC servers.",
    discussion: """
      Without a subcommand, sluice runs the gateway (`sluice serve`): it hosts proto.StreamService, \
      hello.UserService and DataService over native gRPC (HTTP/2, h2c) and translates WebSocket/JSON \
      sessions and HTTP JSON calls to them. Every RPC has the path /<package>.<Service>/<Method> on \
      both ports. SIGTERM or SIGINT shuts down gracefully: health turns NOT_SERVING, new RPCs are \
      refused, open streams end with UNAVAILABLE, and the process exits 0. \
      `sluice serve --help` lists the gateway's flags.
      """,
    version: "sluice \(Self.version)",
    subcommands: [ServeCommand.self, CallCommand.self, ListCommand.self, DescribeCommand.self, OpenAPICommand.self],
    defaultSubcommand: ServeCommand.self
  )

  /// Parses and runs the command as ArgumentParser's own `main` does, with `serve`'s arguments
  /// first completed from `--config` and the `SLUICE_*` environment (`ConfigurationSources`).
  static func main() async {
    var arguments = Array(CommandLine.arguments.dropFirst())
    var origins = ConfigurationSources.Origins()
    do {
      let others: Set<String> = ["call", "list", "describe", "openapi", "help", "-h", "--help", "--version"]
      if arguments.first == "serve" || !others.contains(arguments.first ?? "serve") {
        if arguments.first == "serve" { arguments.removeFirst() }
        let merged = try await ConfigurationSources.arguments(
          arguments, environment: ProcessInfo.processInfo.environment)
        arguments = ["serve"] + merged.arguments
        origins = merged.origins
      }
      var command = try parseAsRoot(arguments)
      if var command = command as? any AsyncParsableCommand {
        try await command.run()
      } else {
        try command.run()
      }
    } catch {
      let code = exitCode(for: error)
      let message = fullMessage(for: error)
      guard code != .success, !(error is ExitCode), origins.annotate(message) != message else { exit(withError: error) }
      // A value from the file or the environment is refused: say where it was set.
      ClientOutput.standardError(origins.annotate(message) + "\n")
      Foundation.exit(code.rawValue)
    }
  }
}

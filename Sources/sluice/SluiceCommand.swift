public import ArgumentParser

/// `sluice`: the gateway (`serve`, the default) and the command-line client for any gRPC server or
/// Sluice gateway (`call`, `list`, `describe`).
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
    subcommands: [ServeCommand.self, CallCommand.self, ListCommand.self, DescribeCommand.self],
    defaultSubcommand: ServeCommand.self
  )
}

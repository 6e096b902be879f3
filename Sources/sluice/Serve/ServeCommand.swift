public import ArgumentParser
public import Logging
import Sluice
import UnixSignals

/// `sluice [serve]`: parses flags (in option groups, `ServeOptions.swift`) into a
/// `GatewayConfiguration` (`ServeCommand+Configuration.swift`) and runs the `Gateway` until
/// SIGTERM/SIGINT.
struct ServeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "serve",
    abstract: "Run the gateway (the default: `sluice --grpc-port 8888` is `sluice serve --grpc-port 8888`).",
    discussion: """
      Hosts proto.StreamService, hello.UserService and DataService over native gRPC (HTTP/2, h2c) \
      and translates WebSocket/JSON sessions to them. Every RPC has the path \
      /<package>.<Service>/<Method> on both ports. SIGTERM or SIGINT shuts down gracefully: \
      new RPCs are refused, open streams end with UNAVAILABLE, and the process exits 0.
      """
  )

  @OptionGroup(title: "Ports and connections") var listen: ListenOptions
  @OptionGroup(title: "Limits on calls") var limits: CallLimitOptions
  @OptionGroup(title: "Access") var access: AccessOptions
  @OptionGroup(title: "Native gRPC port (HTTP/2)") var grpc: GRPCPortOptions
  @OptionGroup(title: "Services and upstreams") var services: ServiceOptions
  @OptionGroup(title: "Process") var process: ProcessOptions

  @Option(
    help: ArgumentHelp(
      "A YAML (.yaml, .yml) or JSON file of flag values, keyed by the flags' names (grpc-port: 9000).",
      discussion:
        "SLUICE_* environment variables (SLUICE_GRPC_PORT=9000; lists comma-separated) win over the file, and the command line's flags over both.",
      valueName: "file"
    )
  )
  var config: String?

  @Flag(
    help:
      "Print the effective configuration (file < environment < flags) as YAML and exit; tokens and URL passwords are not shown."
  )
  var printConfig = false

  func run() async throws {
    if self.printConfig {
      var text = "# sluice \(SluiceCommand.version): the effective configuration (--config < SLUICE_* < flags)\n"
      for (key, _, value) in ConfigurationSources.keys { text += value(self).line(key) + "\n" }
      ClientOutput.standardOutput(text)
      return
    }
    let level = self.process.logLevel
    LoggingSystem.bootstrap { label in
      var handler = StreamLogHandler.standardError(label: label)
      handler.logLevel = level
      return handler
    }
    let gateway = try Gateway(
      configuration: try self.gatewayConfiguration(), logger: Logger(label: "sluice"),
      shutdownSignals: [.sigterm, .sigint])
    try await gateway.run()
  }
}

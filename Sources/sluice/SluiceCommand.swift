public import ArgumentParser
public import Logging
import Sluice
import UnixSignals

/// `sluice`: parses flags into a `GatewayConfiguration` and runs the `Gateway` until SIGTERM/SIGINT.
@main
struct SluiceCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sluice",
    abstract: "A gRPC gateway for browsers and scripts.",
    discussion: """
      Hosts proto.StreamService, hello.UserService and DataService over native gRPC (HTTP/2, h2c). \
      Every RPC has the path /<package>.<Service>/<Method>. SIGTERM or SIGINT shuts down gracefully: \
      new RPCs are refused, open streams end with UNAVAILABLE, and the process exits 0.
      """
  )

  @Option(help: "The address to listen on; 0.0.0.0 or :: exposes the gateway beyond this machine.")
  var host = GatewayConfiguration().host

  @Option(help: "The native gRPC (h2c) port; 0 picks a free port, which is logged.")
  var grpcPort = GatewayConfiguration().grpcPort

  @Option(help: "The HTTP/1.1 JSON and WebSocket port (reserved: those front ends are not served yet).")
  var httpPort = GatewayConfiguration().httpPort

  @Option(help: "Milliseconds the seed services pause between List sends and after each Record receive; 0 for none.")
  var paceMs = 1000

  @Option(help: "How many responses proto.StreamService/List sends.")
  var listCount = GatewayConfiguration().listCount

  @Option(help: "Seconds a graceful shutdown may take before open RPCs are cancelled.")
  var drainTimeout = 10.0

  @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
  var logLevel: Logger.Level = .info

  func validate() throws {
    for (flag, port) in [("--grpc-port", self.grpcPort), ("--http-port", self.httpPort)]
    where !(0...65535).contains(port) {
      throw ValidationError("\(flag) must be between 0 and 65535, not \(port).")
    }
    guard self.paceMs >= 0 else { throw ValidationError("--pace-ms must not be negative.") }
    guard self.listCount >= 0 else { throw ValidationError("--list-count must not be negative.") }
    guard self.drainTimeout >= 0 else { throw ValidationError("--drain-timeout must not be negative.") }
  }

  func run() async throws {
    let level = self.logLevel
    LoggingSystem.bootstrap { label in
      var handler = StreamLogHandler.standardError(label: label)
      handler.logLevel = level
      return handler
    }
    let configuration = GatewayConfiguration(
      host: self.host,
      grpcPort: self.grpcPort,
      httpPort: self.httpPort,
      pace: .milliseconds(self.paceMs),
      listCount: self.listCount,
      drainTimeout: .milliseconds(Int64(self.drainTimeout * 1000))
    )
    let gateway = Gateway(
      configuration: configuration,
      logger: Logger(label: "sluice"),
      shutdownSignals: [.sigterm, .sigint]
    )
    try await gateway.run()
  }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

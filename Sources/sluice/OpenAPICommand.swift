internal import ArgumentParser
internal import Sluice
internal import SluiceCodec

/// `sluice openapi`: the OpenAPI 3.1 document that `GET /openapi.json` serves, without running a
/// gateway: for descriptor sets (`--descriptor-set`), for a server's descriptors over reflection
/// (an address), or for the services Sluice hosts itself (neither), with `--http-rule` rules in
/// place of a method's own. Rules left out are named on stderr, as the gateway logs them.
struct OpenAPICommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "openapi",
    abstract:
      "Print the OpenAPI 3.1 document of the REST routes (google.api.http rules) of descriptor sets, a server (reflection) or the hosted services."
  )

  @Argument(help: "A gRPC server to ask for its descriptors over reflection: HOST:PORT.")
  var address: String?

  @Flag(help: "Connect to the server over TLS.")
  var tls = false

  @Option(help: "PEM certificates to trust for --tls instead of the system's roots.")
  var ca: String?

  @Option(
    help: ArgumentHelp(
      "A FileDescriptorSet (protoc --include_imports --descriptor_set_out) whose methods' rules to describe; repeatable.",
      valueName: "file"
    )
  )
  var descriptorSet: [String] = []

  @Option(
    help: ArgumentHelp(
      "A REST route for a method, in place of its google.api.http rules, as for serve; repeatable.",
      valueName: "rule"
    )
  )
  var httpRule: [String] = []

  func validate() throws {
    if self.address != nil, !self.descriptorSet.isEmpty {
      throw ValidationError("Give a server or --descriptor-set, not both.")
    }
    for text in self.httpRule {
      do {
        _ = try ConfiguredHTTPRule(parsing: text)
      } catch {
        throw ValidationError(error.description)
      }
    }
  }

  func run() async throws {
    try await ClientOutput.reportingStatus {
      let rules = try self.httpRule.map { text throws(ConfiguredHTTPRuleError) in
        try ConfiguredHTTPRule(parsing: text)
      }
      let registry: DescriptorRegistry
      if self.address != nil || !self.descriptorSet.isEmpty {
        // The client commands' loading: the files when given (the address is then not used),
        // else the server's reflection.
        var arguments = [self.address ?? "127.0.0.1:1"] + self.descriptorSet.flatMap { ["--descriptor-set", $0] }
        if self.tls { arguments.append("--tls") }
        if let ca = self.ca { arguments += ["--ca", ca] }
        registry = try await ConnectionOptions.parse(arguments).descriptors(for: nil).codec.registry
      } else {
        registry = try ClientDescriptors(fileDescriptorSets: [OpenAPIExport.hostedDescriptors], services: nil)
          .codec.registry
      }
      let (json, problems) = OpenAPIExport.document(registry, httpRules: rules)
      for problem in problems { ClientOutput.standardError("REST route left out: \(problem)\n") }
      ClientOutput.standardOutput(String(decoding: json, as: UTF8.self) + "\n")
    }
  }
}

internal import ArgumentParser
internal import Configuration
internal import Foundation
internal import Logging
import Sluice
internal import Synchronization
internal import Yams

/// `sluice --config FILE` (YAML or JSON) and `SLUICE_*` environment variables: every `serve` flag
/// under its own name (`grpc-port: 9000`, `SLUICE_GRPC_PORT=9000`), read with swift-configuration
/// and handed to the flag parser ahead of the command line's own flags, so that the file, the
/// environment and the command line are checked by one set of rules. A key set in several places
/// takes the command line's value, else the environment's, else the file's.
enum ConfigurationSources {
  /// How a flag takes its value.
  enum Kind {
    case string, int, double, flag, strings
  }

  /// Every `serve` option and flag that a file or the environment may set (all but `--config` and
  /// `--print-config`), by name and kind, and how to print its effective value
  /// (`--print-config`). test_config.py checks the list against `serve --help`'s flags.
  static let keys: [(name: String, kind: Kind, value: @Sendable (ServeCommand) -> ConfigText)] = [
    ("host", .string, { .string($0.listen.host) }),
    ("grpc-port", .int, { .number($0.listen.grpcPort) }),
    ("http-port", .int, { .number($0.listen.httpPort) }),
    ("pace-ms", .int, { .number($0.services.paceMs) }),
    ("list-count", .int, { .number($0.services.listCount) }),
    ("drain-timeout", .double, { .number($0.process.drainTimeout) }),
    ("shutdown-delay", .double, { .number($0.process.shutdownDelay) }),
    ("max-message-bytes", .int, { .number($0.limits.maxMessageBytes) }),
    ("allowed-origin", .strings, { .urls($0.access.allowedOrigins) }),
    ("require-bearer", .string, { .redacted($0.access.requireBearer) }),
    ("bearer-cookie", .string, { .optional($0.access.bearerCookie) }),
    ("ws-ping-interval", .double, { .number($0.access.wsPingInterval) }),
    ("max-json-depth", .int, { .number($0.limits.maxJsonDepth) }),
    ("max-header-bytes", .int, { .number($0.listen.maxHeaderBytes) }),
    ("max-concurrent-rpcs", .int, { .number($0.limits.maxConcurrentRpcs) }),
    ("max-streams-per-session", .int, { .number($0.limits.maxStreamsPerSession) }),
    ("max-connections", .int, { .number($0.listen.maxConnections) }),
    ("handshake-timeout", .double, { .number($0.listen.handshakeTimeout) }),
    ("idle-timeout", .double, { .number($0.listen.idleTimeout) }),
    ("send-timeout", .double, { .number($0.listen.sendTimeout) }),
    ("body-timeout", .double, { .number($0.limits.bodyTimeout) }),
    ("max-buffered-request-bytes", .int, { .number($0.limits.maxBufferedRequestBytes) }),
    ("allowed-host", .strings, { .strings($0.access.allowedHosts) }),
    ("no-get-calls", .flag, { .bool($0.access.noGetCalls) }),
    ("grpc-max-concurrent-streams", .int, { .number($0.grpc.grpcMaxConcurrentStreams) }),
    ("grpc-max-connection-idle", .double, { .number($0.grpc.grpcMaxConnectionIdle) }),
    ("grpc-max-connection-age", .double, { .number($0.grpc.grpcMaxConnectionAge) }),
    ("grpc-max-connection-age-grace", .double, { .number($0.grpc.grpcMaxConnectionAgeGrace) }),
    ("grpc-initial-window-size", .int, { .number($0.grpc.grpcInitialWindowSize) }),
    ("grpc-max-frame-size", .int, { .number($0.grpc.grpcMaxFrameSize) }),
    ("grpc-max-header-list-size", .int, { .number($0.grpc.grpcMaxHeaderListSize) }),
    ("tls-cert", .string, { .optional($0.listen.tlsCert) }),
    ("tls-key", .string, { .optional($0.listen.tlsKey) }),
    ("public-dir", .string, { .optional($0.listen.publicDir) }),
    ("grpc-on-http-port", .flag, { .bool($0.listen.grpcOnHttpPort) }),
    ("echo-metadata", .flag, { .bool($0.services.echoMetadata) }),
    ("forward-bearer", .flag, { .bool($0.access.forwardBearer) }),
    ("interop-service", .flag, { .bool($0.services.interopService) }),
    ("upstream", .strings, { .strings($0.services.upstream) }),
    ("descriptor-set", .strings, { .strings($0.services.descriptorSet) }),
    ("http-rule", .strings, { .strings($0.services.httpRule) }),
    ("json-output", .strings, { .strings($0.services.jsonOutput) }),
    ("json-ignore-unknown-fields", .flag, { .bool($0.services.jsonIgnoreUnknownFields) }),
    ("rest-ignore-unknown-query", .flag, { .bool($0.services.restIgnoreUnknownQuery) }),
    ("upstream-reflection", .flag, { .bool($0.services.upstreamReflection) }),
    ("upstream-tls", .flag, { .bool($0.services.upstreamTls) }),
    ("upstream-ca", .string, { .optional($0.services.upstreamCa) }),
    ("upstream-server-name", .string, { .optional($0.services.upstreamServerName) }),
    ("hosted", .string, { .string($0.services.hosted.rawValue) }),
    ("otlp-endpoint", .string, { .url($0.process.otlpEndpoint) }),
    ("otlp-protocol", .string, { .string($0.process.otlpProtocol.rawValue) }),
    ("log-level", .string, { .string($0.process.logLevel.rawValue) }),
  ]

  /// The environment variable of a key: `SLUICE_` and the key in capitals, `-` as `_`.
  static func environmentName(_ key: String) -> String {
    "SLUICE_" + key.uppercased().replacingOccurrences(of: "-", with: "_")
  }

  /// Where the values that did not come from the command line came from, for error messages.
  struct Origins {
    var byFlag: [String: String] = [:]

    /// `message` with a note naming where a flag it mentions was set, when not on the command line.
    func annotate(_ message: String) -> String {
      let noted = self.byFlag.filter { message.contains("--\($0.key)") }.sorted { $0.key < $1.key }
      guard !noted.isEmpty else { return message }
      return message + "\n" + noted.map { "(--\($0.key) came from \($0.value))" }.joined(separator: "\n")
    }
  }

  /// The arguments for `serve`: the values of `--config FILE` and the environment that the command
  /// line does not set, as flags, then the command line's own (without `--config`).
  /// - Throws: `ValidationError` naming the file and key of a value that is not of its flag's kind,
  ///   or a key the file has that is not a flag.
  static func arguments(
    _ commandLine: [String],
    environment: [String: String]
  ) async throws -> (arguments: [String], origins: Origins) {
    var own: [String] = []
    var path: String?
    var index = commandLine.startIndex
    while index < commandLine.endIndex {
      let argument = commandLine[index]
      if argument == "--config" {
        guard index + 1 < commandLine.endIndex else { throw ValidationError("--config needs a file.") }
        path = commandLine[index + 1]
        index += 2
        continue
      }
      if argument.hasPrefix("--config=") {
        path = String(argument.dropFirst("--config=".count))
      } else {
        own.append(argument)
      }
      index += 1
    }
    let given = Set(
      own.compactMap { argument -> String? in
        guard argument.hasPrefix("--") else { return nil }
        return String(argument.dropFirst(2).prefix { $0 != "=" })
      })

    var file: ConfigFile?
    if let path { file = try await ConfigFile(path: path) }
    let environmentValues = EnvironmentVariablesProvider(environmentVariables: environment).snapshot()
    var arguments: [String] = []
    var origins = Origins()
    for (key, kind, _) in Self.keys where !given.contains(key) {
      let variable = Self.environmentName(key)
      let value: ConfigValue?
      let origin: String
      if environment[variable] != nil {
        value = try Self.lookUp(key, kind, in: environmentValues, as: ["sluice", key], source: variable)
        origin = variable
      } else if let file {
        value = try Self.lookUp(key, kind, in: file.snapshot, as: [key], source: "\(file.path): \(key)")
        origin = "\(file.path), key \(key)"
        if key == "http-rule", !file.httpRules.isEmpty {
          // The http: section's rules join the http-rule list's.
          var rules: [String] = []
          if case .stringArray(let listed)? = value?.content { rules = listed }
          if case .string(let listed)? = value?.content { rules = [listed] }
          arguments += Self.tokens(key, ConfigValue(.stringArray(rules + file.httpRules), isSecret: false))
          origins.byFlag[key] = "\(file.path), keys http-rule and http"
          continue
        }
      } else {
        continue
      }
      guard let value else { continue }
      let tokens = Self.tokens(key, value)
      if !tokens.isEmpty { origins.byFlag[key] = origin }
      arguments += tokens
    }
    return (arguments + own, origins)
  }

  private static func lookUp(
    _ key: String,
    _ kind: Kind,
    in provider: any ConfigSnapshot,
    as components: [String],
    source: String
  ) throws -> ConfigValue? {
    let type: ConfigType =
      switch kind {
      case .string: .string
      case .int: .int
      case .double: .double
      case .flag: .bool
      case .strings: .stringArray
      }
    do {
      return try provider.value(forKey: AbsoluteConfigKey(components), type: type).value
    } catch {
      // A list of one may be written as a plain value.
      if kind == .strings, let single = try? provider.value(forKey: AbsoluteConfigKey(components), type: .string).value
      {
        return single
      }
      let expected =
        switch kind {
        case .string: "a string"
        case .int: "an integer"
        case .double: "a number"
        case .flag: "true or false"
        case .strings: "a list of strings"
        }
      throw ValidationError("\(source): expected \(expected) for --\(key).")
    }
  }

  private static func tokens(_ key: String, _ value: ConfigValue) -> [String] {
    switch value.content {
    case .string(let text): ["--\(key)", text]
    case .int(let number): ["--\(key)", "\(number)"]
    case .double(let number): ["--\(key)", "\(number)"]
    case .bool(let on): on ? ["--\(key)"] : []
    case .stringArray(let texts): texts.flatMap { ["--\(key)", $0] }
    default: []
    }
  }
}

/// A `--config` file: YAML (`.yaml`, `.yml`) or JSON (any other name), with the names of every
/// key it holds, so that a key that is not a flag (a typo) is an error naming it. Its `http:`
/// section (API Configuration's rules, `HTTPRulesSection`) is taken out first and read as
/// `--http-rule` values: swift-configuration reads the flat rest.
private struct ConfigFile {
  let path: String
  let snapshot: any ConfigSnapshot
  /// The `http:` section's rules, as `--http-rule` values.
  let httpRules: [String]

  init(path: String) async throws {
    self.path = path
    guard let data = FileManager.default.contents(atPath: path) else {
      throw ValidationError("--config: cannot read \(path).")
    }
    // swift-configuration hands every key of the file to the secrets check while it parses:
    // that is where the keys are listed (nothing marks a value secret).
    let seen = Mutex<[String]>([])
    func listing<Value>() -> SecretsSpecifier<String, Value> {
      .dynamic { key, _ in
        seen.withLock { $0.append(key) }
        return false
      }
    }
    let yaml = path.hasSuffix(".yaml") || path.hasSuffix(".yml")
    do {
      let rest: [UInt8]
      if yaml {
        (rest, self.httpRules) = try Self.splitYAML(data, path: path)
        self.snapshot = try Self.snapshot(YAMLSnapshot.self, rest, path, .init(secretsSpecifier: listing()))
      } else {
        (rest, self.httpRules) = try Self.splitJSON(data, path: path)
        self.snapshot = try Self.snapshot(JSONSnapshot.self, rest, path, .init(secretsSpecifier: listing()))
      }
    } catch let error as ValidationError {
      throw error
    } catch {
      throw ValidationError(
        "--config \(path) is not valid \(yaml ? "YAML" : "JSON") of flag names and values: \(error)")
    }
    let known = Set(ConfigurationSources.keys.map(\.name))
    let unknown = seen.withLock { $0 }.filter { !known.contains($0) }.sorted()
    guard unknown.isEmpty else {
      throw ValidationError(
        "\(path): \(unknown.map { "'\($0)'" }.joined(separator: ", ")) \(unknown.count == 1 ? "is not a flag" : "are not flags") of sluice serve (the keys are the flags' names, e.g. grpc-port)."
      )
    }
  }

  private static func snapshot<Snapshot: FileConfigSnapshot>(
    _ type: Snapshot.Type, _ bytes: [UInt8], _ path: String, _ options: Snapshot.ParsingOptions
  ) throws -> Snapshot {
    try Snapshot(data: bytes.span.bytes, providerName: path, parsingOptions: options)
  }

  /// The YAML without its `http:` section, and the section's rules.
  private static func splitYAML(_ data: Data, path: String) throws -> ([UInt8], [String]) {
    guard var mapping = try Yams.compose(yaml: String(decoding: data, as: UTF8.self))?.mapping,
      let http = mapping["http"]
    else { return (Array(data), []) }
    mapping["http"] = nil
    let rules = try HTTPRulesSection.rules(Self.plain(http), file: path)
    return (Array(try Yams.serialize(node: .mapping(mapping)).utf8), rules)
  }

  /// A YAML node as strings, arrays and dictionaries.
  private static func plain(_ node: Yams.Node) -> Any {
    switch node {
    case .scalar(let scalar): scalar.string
    case .sequence(let sequence): sequence.map(Self.plain)
    case .mapping(let mapping):
      Dictionary(mapping.map { (Self.plain($0.key) as? String ?? "", Self.plain($0.value)) }) { first, _ in first }
    case .alias: ""
    }
  }

  /// The JSON without its `"http"` member, and the member's rules.
  private static func splitJSON(_ data: Data, path: String) throws -> ([UInt8], [String]) {
    guard var object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let http = object["http"]
    else { return (Array(data), []) }
    object["http"] = nil
    let rules = try HTTPRulesSection.rules(Self.plainJSON(http), file: path)
    return (Array(try JSONSerialization.data(withJSONObject: object)), rules)
  }

  /// JSON values with numbers and booleans as text, as YAML's scalars are.
  private static func plainJSON(_ value: Any) -> Any {
    switch value {
    case let array as [Any]: array.map(Self.plainJSON)
    case let object as [String: Any]: object.mapValues(Self.plainJSON)
    case let text as String: text
    default: "\(value)"
    }
  }
}

/// A value as `--print-config` prints it: YAML that `--config` reads back.
enum ConfigText {
  case string(String)
  case optional(String?)
  case number(any Numeric & CustomStringConvertible)
  case bool(Bool)
  case strings([String])
  /// `--require-bearer`: where the tokens are, never the tokens.
  case redacted(String?)
  /// A URL (`--otlp-endpoint`) or a list of them (`--allowed-origin`), shown without a password:
  /// the userinfo of each (`http://user:password@host`) is shown as `REDACTED@`.
  case url(String?)
  case urls([String])

  /// The value as YAML, or nil when it is not set (an optional flag not given).
  var yaml: String? {
    switch self {
    case .string(let text): Self.quoted(text)
    case .optional(let text): text.map(Self.quoted)
    case .number(let number): number.description
    case .bool(let on): on ? "true" : "false"
    case .strings(let texts): "[" + texts.map(Self.quoted).joined(separator: ", ") + "]"
    case .redacted(let source): source.map { Self.quoted($0) + "  # the tokens themselves are not shown" }
    case .url(let text): text.map { Self.quoted(Self.withoutUserinfo($0)) + Self.userinfoNote([$0]) }
    case .urls(let texts):
      "[" + texts.map { Self.quoted(Self.withoutUserinfo($0)) }.joined(separator: ", ") + "]"
        + Self.userinfoNote(texts)
    }
  }

  /// The line of `key`: `key: value`, or a comment when it is not set, so that the output reads
  /// back as the same configuration.
  func line(_ key: String) -> String {
    self.yaml.map { "\(key): \($0)" } ?? "# \(key): (not set)"
  }

  /// `url` with its userinfo (what comes before `@` in the authority, RFC 3986 3.2.1) as `REDACTED`.
  private static func withoutUserinfo(_ url: String) -> String {
    guard let schemeEnd = url.range(of: "://")?.upperBound else { return url }
    let authority = url[schemeEnd...].prefix { !"/?#\\".contains($0) }
    guard let at = authority.lastIndex(of: "@") else { return url }
    return String(url[..<schemeEnd]) + "REDACTED" + url[at...]
  }

  /// A YAML comment saying that userinfo is not shown, when one of `urls` has any; else nothing.
  private static func userinfoNote(_ urls: [String]) -> String {
    urls.allSatisfy { Self.withoutUserinfo($0) == $0 } ? "" : "  # user:password@ is not shown (REDACTED@)"
  }

  /// A YAML double-quoted string (JSON's escaping is valid in it).
  private static func quoted(_ text: String) -> String {
    let data =
      (try? JSONSerialization.data(withJSONObject: [text], options: [.withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
    return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
  }
}

public import SluiceCodec

/// A REST rule given to the gateway (`--http-rule`, or `http-rule:` in the configuration file)
/// for a method whose proto cannot be changed, as gRPC API Configuration's `http.rules` gives
/// them: it takes the place of the method's own `google.api.http` rules.
///
///     SELECTOR METHOD TEMPLATE [body=FIELD] [response_body=FIELD]
///     hello.UserService.SayHi GET /v1/hi/{name}
///     /proto.StreamService/Record POST /v1/points body=*
///
/// SELECTOR is `pkg.Service.Method` (API Configuration's form) or the gRPC path; METHOD is GET,
/// PUT, POST, DELETE, PATCH or a custom one (upper case).
public struct ConfiguredHTTPRule: Sendable, Equatable {
  /// The method's gRPC path, `/pkg.Service/Method`.
  public var path: String
  public var rule: HTTPRule

  public init(path: String, rule: HTTPRule) {
    self.path = path
    self.rule = rule
  }

  /// Parses the form above, checking the template; the error names what is wrong.
  public init(parsing text: String) throws(ConfiguredHTTPRuleError) {
    let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
    guard words.count >= 3 else {
      throw ConfiguredHTTPRuleError(
        "--http-rule \(text): expected SELECTOR METHOD TEMPLATE [body=FIELD] [response_body=FIELD]")
    }
    let selector = words[0]
    let path: String
    if selector.hasPrefix("/") {
      path = selector
    } else if let dot = selector.lastIndex(of: ".") {
      path = "/\(selector[..<dot])/\(selector[selector.index(after: dot)...])"
    } else {
      throw ConfiguredHTTPRuleError(
        "--http-rule \(text): '\(selector)' is not pkg.Service.Method or /pkg.Service/Method")
    }
    let parts = path.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 3, parts[0].isEmpty, !parts[1].isEmpty, !parts[2].isEmpty else {
      throw ConfiguredHTTPRuleError(
        "--http-rule \(text): '\(selector)' is not pkg.Service.Method or /pkg.Service/Method")
    }
    let method = words[1]
    guard !method.isEmpty, method.allSatisfy({ $0.isUppercase || $0 == "-" }) else {
      throw ConfiguredHTTPRuleError("--http-rule \(text): '\(method)' is not an HTTP method (GET, POST, …)")
    }
    do {
      _ = try PathTemplate(words[2])
    } catch {
      throw ConfiguredHTTPRuleError("--http-rule \(text): \(error.description)")
    }
    var rule = HTTPRule(method: method, pattern: words[2])
    for option in words.dropFirst(3) {
      if option.hasPrefix("body=") {
        rule.body = String(option.dropFirst("body=".count))
      } else if option.hasPrefix("response_body=") {
        rule.responseBody = String(option.dropFirst("response_body=".count))
      } else {
        throw ConfiguredHTTPRuleError("--http-rule \(text): '\(option)' is not body=FIELD or response_body=FIELD")
      }
    }
    self.init(path: path, rule: rule)
  }
}

/// Why a `--http-rule` does not parse.
public struct ConfiguredHTTPRuleError: Error, CustomStringConvertible {
  public let description: String

  init(_ description: String) {
    self.description = description
  }
}

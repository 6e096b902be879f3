internal import ArgumentParser
internal import Foundation

/// The `http:` section of a `--config` file, in the shape of gRPC API Configuration (the
/// `google.api.Http` message that Google's service configs, grpc-gateway's
/// `--grpc-api-configuration` and Envoy's transcoder docs use), turned into `--http-rule` values:
///
///     http:
///       rules:
///         - selector: hello.UserService.SayHi
///           get: /v1/hi/{name}
///           additional_bindings:
///             - post: /v1/hi
///               body: "*"
///         - selector: proto.StreamService.List
///           custom: { kind: SEARCH, path: /v1/points }
///           response_body: pt
///
/// Each rule has a `selector` and one of `get`, `put`, `post`, `delete`, `patch` or `custom`
/// (`kind` and `path`), and may have `body`, `response_body` and `additional_bindings` (rules
/// without a selector or bindings of their own). Any other key is an error naming it, as in the
/// rest of the file. The values go through `--http-rule`'s own parsing, so both check alike.
///
/// Written by hand: swift-configuration reads scalars and lists of scalars only, and this is a
/// list of objects. The file is parsed by Yams (YAML) or Foundation (JSON) into plain values first.
enum HTTPRulesSection {
  static let ruleKeys = [
    "selector", "get", "put", "post", "delete", "patch", "custom", "body", "response_body", "additional_bindings",
  ]

  /// The `--http-rule` values of the section (`http`'s value: strings, arrays and dictionaries).
  static func rules(_ section: Any, file: String) throws -> [String] {
    let place = "\(file): http"
    guard let http = section as? [String: Any] else {
      throw ValidationError("\(place): expected an object with 'rules' (a list of HTTP rules).")
    }
    for key in http.keys.sorted() where key != "rules" {
      throw ValidationError("\(place): '\(key)' is not supported (the section has 'rules').")
    }
    guard let list = http["rules"] else { return [] }
    guard let rules = list as? [Any] else { throw ValidationError("\(place).rules: expected a list of HTTP rules.") }
    var texts: [String] = []
    for (index, rule) in rules.enumerated() {
      let where_ = "\(place).rules[\(index)]"
      guard let rule = rule as? [String: Any] else { throw ValidationError("\(where_): expected an object.") }
      guard let selector = rule["selector"] as? String, !selector.isEmpty else {
        throw ValidationError("\(where_): 'selector' (pkg.Service.Method) is missing.")
      }
      texts.append(try Self.binding(rule, selector: selector, at: where_, nested: false))
      if let more = rule["additional_bindings"] {
        guard let bindings = more as? [Any] else {
          throw ValidationError("\(where_).additional_bindings: expected a list of HTTP rules.")
        }
        for (number, binding) in bindings.enumerated() {
          let place = "\(where_).additional_bindings[\(number)]"
          guard let binding = binding as? [String: Any] else { throw ValidationError("\(place): expected an object.") }
          texts.append(try Self.binding(binding, selector: selector, at: place, nested: true))
        }
      }
    }
    return texts
  }

  /// One binding as `--http-rule` text: `SELECTOR METHOD TEMPLATE [body=…] [response_body=…]`.
  private static func binding(_ rule: [String: Any], selector: String, at place: String, nested: Bool) throws
    -> String
  {
    for key in rule.keys.sorted() where !Self.ruleKeys.contains(key) {
      throw ValidationError(
        "\(place): '\(key)' is not a key of an HTTP rule (\(Self.ruleKeys.joined(separator: ", "))).")
    }
    if nested, rule["selector"] != nil || rule["additional_bindings"] != nil {
      throw ValidationError("\(place): an additional binding has no selector or additional_bindings of its own.")
    }
    var patterns: [(String, String)] = []
    for verb in ["get", "put", "post", "delete", "patch"] {
      guard let value = rule[verb] else { continue }
      guard let path = value as? String else { throw ValidationError("\(place).\(verb): expected a path template.") }
      patterns.append((verb.uppercased(), path))
    }
    if let custom = rule["custom"] {
      guard let custom = custom as? [String: Any], let kind = custom["kind"] as? String,
        let path = custom["path"] as? String, custom.count == 2
      else {
        throw ValidationError("\(place).custom: expected an object with 'kind' and 'path'.")
      }
      patterns.append((kind, path))
    }
    guard patterns.count == 1, let (method, template) = patterns.first else {
      throw ValidationError(
        "\(place): expected one of get, put, post, delete, patch or custom, not \(patterns.count).")
    }
    var text = "\(selector) \(method) \(template)"
    for key in ["body", "response_body"] {
      guard let value = rule[key] else { continue }
      guard let field = value as? String else { throw ValidationError("\(place).\(key): expected a field name.") }
      text += " \(key)=\(field)"
    }
    return text
  }
}

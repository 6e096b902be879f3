internal import SluiceCodec

/// The REST routes of a set of descriptors: every method's `google.api.http` rules (and their
/// `additional_bindings`), or the ones `--http-rule` gives it, their path templates parsed once,
/// looked up by HTTP method and path.
///
/// A rule that cannot be served is left out and reported in `problems` (logged when the
/// descriptors load): a template that does not parse, a body or response field the message does
/// not have, a template that binds a field the message does not have, or a route that another
/// method's rule already takes (the same HTTP method and the same template shape).
struct RESTRoutes: Sendable {
  struct Route: Sendable {
    let httpMethod: String
    let template: PathTemplate
    let rule: HTTPRule
    let method: SluiceCodec.MethodDescriptor
  }

  /// What a request's method and path find.
  enum Match {
    /// The route, and its path variables' values.
    case route(Route, [PathTemplate.Binding])
    /// Routes match the path, for other HTTP methods (for 405 and `Allow`).
    case methodNotAllowed([String])
    /// A matching route's variable is not well percent-encoded.
    case badPath(String)
    /// No route has this path.
    case none
  }

  let routes: [Route]
  let problems: [String]

  static let empty = RESTRoutes(routes: [], problems: [])

  private init(routes: [Route], problems: [String]) {
    self.routes = routes
    self.problems = problems
  }

  /// The routes of `registry`'s rules; a method with `configured` rules (`--http-rule`) has those
  /// instead of its own.
  init(registry: DescriptorRegistry, configured: [ConfiguredHTTPRule] = []) {
    var routes: [Route] = []
    var problems: [String] = []
    var shapes: [String: String] = [:]  // "GET /v1/*/books" -> the method that has it
    var byPath: [String: [HTTPRule]] = [:]
    for entry in configured { byPath[entry.path, default: []].append(entry.rule) }
    for path in byPath.keys.sorted() where registry.method(path: path) == nil {
      problems.append("--http-rule \(path): no such method in the descriptors")
    }
    for method in registry.methods {
      for rule in byPath[method.path] ?? method.httpRules {
        let template: PathTemplate
        do {
          template = try PathTemplate(rule.pattern)
        } catch {
          problems.append("\(method.path): \(error.description)")
          continue
        }
        if let problem = Self.check(rule, template, method) {
          problems.append("\(method.path): \(rule.method) \(rule.pattern): \(problem)")
          continue
        }
        let shape = "\(rule.method) \(Self.shape(template))"
        if let other = shapes[shape] {
          problems.append(
            "\(method.path): \(rule.method) \(rule.pattern) conflicts with a rule of \(other) (the same method and path shape); left out"
          )
          continue
        }
        shapes[shape] = method.path
        routes.append(Route(httpMethod: rule.method, template: template, rule: rule, method: method))
      }
    }
    self.routes = routes
    self.problems = problems
  }

  var isEmpty: Bool { self.routes.isEmpty }

  /// The route for `httpMethod` and `path` (no query string). Several templates may match one
  /// path: the one with the most literal segments wins, then the one without `**`.
  func match(httpMethod: String, path: Substring) -> Match {
    guard !self.routes.isEmpty else { return .none }
    var best: (route: Route, bindings: [PathTemplate.Binding], score: Int)?
    var others: [String] = []
    for route in self.routes {
      let bindings: [PathTemplate.Binding]?
      do {
        bindings = try route.template.match(path)
      } catch {
        if route.httpMethod == httpMethod { return .badPath(error.description) }
        continue
      }
      guard let bindings else { continue }
      guard route.httpMethod == httpMethod else {
        if !others.contains(route.httpMethod) { others.append(route.httpMethod) }
        continue
      }
      let score = Self.specificity(route.template)
      if best == nil || score > best?.score ?? .min { best = (route, bindings, score) }
    }
    if let best { return .route(best.route, best.bindings) }
    return others.isEmpty ? .none : .methodNotAllowed(others)
  }

  /// Literal segments count most; `**` least.
  private static func specificity(_ template: PathTemplate) -> Int {
    var score = template.verb == nil ? 0 : 1
    for segment in template.segments {
      switch segment {
      case .literal: score += 100
      case .single: score += 10
      case .multi: score += 0
      }
    }
    return score
  }

  /// The template with its variables erased: `/v1/{name=shelves/*}` and `/v1/shelves/{x}` are
  /// different shapes, `/v1/{a}` and `/v1/{b}` the same.
  private static func shape(_ template: PathTemplate) -> String {
    let segments = template.segments.map { segment -> String in
      switch segment {
      case .literal(let text): text
      case .single: "*"
      case .multi: "**"
      }
    }
    return "/" + segments.joined(separator: "/") + (template.verb.map { ":" + $0 } ?? "")
  }

  /// Why a rule cannot be served for `method`, or nil.
  private static func check(_ rule: HTTPRule, _ template: PathTemplate, _ method: SluiceCodec.MethodDescriptor)
    -> String?
  {
    for variable in template.variables {
      var message: SluiceCodec.MessageDescriptor? = method.input
      for (index, name) in variable.fieldPath.enumerated() {
        guard let field = message?.field(named: name) else {
          return
            "the path binds \(variable.fieldPath.joined(separator: ".")), which \(method.input.fullName) does not have"
        }
        let last = index == variable.fieldPath.count - 1
        if last, field.isRepeated || field.isMap || (field.kind == .message && !field.isScalarWellKnownType) {
          return "the path binds \(variable.fieldPath.joined(separator: ".")), which is not a single value"
        }
        message = field.message
      }
    }
    if !rule.body.isEmpty, rule.body != "*", method.input.field(named: rule.body) == nil {
      return "body \"\(rule.body)\" is not a field of \(method.input.fullName)"
    }
    if !rule.responseBody.isEmpty, method.output.field(named: rule.responseBody) == nil {
      return "response_body \"\(rule.responseBody)\" is not a field of \(method.output.fullName)"
    }
    return nil
  }
}

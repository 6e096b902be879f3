/// A `google.api.http` path template (google/api/http.proto, "Path template syntax"), parsed once
/// and matched against request paths:
///
///     Template = "/" Segments [ Verb ] ;
///     Segments = Segment { "/" Segment } ;
///     Segment  = "*" | "**" | LITERAL | Variable ;
///     Variable = "{" FieldPath [ "=" Segments ] "}" ;
///     FieldPath = IDENT { "." IDENT } ;
///     Verb     = ":" LITERAL ;
///
/// Written by hand: no Swift library parses these templates (grpc-gateway's and Envoy's parsers
/// are Go and C++).
public struct PathTemplate: Sendable, Hashable, CustomStringConvertible {
  /// One path segment of the template.
  public enum Segment: Sendable, Hashable {
    /// Exactly this text (compared after percent-decoding both sides).
    case literal(String)
    /// `*`: any one segment.
    case single
    /// `**`: every remaining segment (zero or more); only last.
    case multi
  }

  /// A variable: the request field it sets, and the template segments it covers.
  public struct Variable: Sendable, Hashable {
    /// The field path, e.g. `["book", "name"]` for `{book.name=...}`.
    public var fieldPath: [String]
    /// The range of ``PathTemplate/segments`` it covers.
    public var segments: Range<Int>
  }

  /// A variable's value in a matched path.
  public struct Binding: Sendable, Hashable {
    public var fieldPath: [String]
    public var value: String

    public init(fieldPath: [String], value: String) {
      self.fieldPath = fieldPath
      self.value = value
    }
  }

  /// A template that does not follow the grammar, or a request path whose percent-encoding is
  /// broken or does not decode to UTF-8.
  public struct Invalid: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String
  }

  public let segments: [Segment]
  public let variables: [Variable]
  /// The custom verb after the last `:` (`archive` for `/v1/{name}:archive`), if any.
  public let verb: String?
  /// The template as written.
  public let description: String

  /// Parses `template`.
  /// - Throws: ``Invalid`` naming what is wrong: no leading `/`, an empty segment, `**` before
  ///   the end, a nested or unclosed variable, a field path that is not identifiers, a field bound
  ///   twice, a literal with `{`, `}`, `*` or `=`.
  public init(_ template: String) throws(Invalid) {
    var parser = Parser(text: Array(template.utf8), template: template)
    (self.segments, self.variables, self.verb) = try parser.parse()
    self.description = template
  }

  /// The variables' values when `path` (no query string, still percent-encoded) matches, nil
  /// when it does not. A single-segment variable's value is percent-decoded whole; a multi-segment
  /// one's keeps `%2F` as is, as http.proto specifies.
  /// - Throws: ``Invalid`` when a matched variable's value has a broken `%` escape or does not
  ///   decode to UTF-8.
  public func match(_ path: Substring) throws(Invalid) -> [Binding]? {
    var path = path
    guard path.hasPrefix("/") else { return nil }
    path = path.dropFirst()
    if let verb {
      guard path.hasSuffix(":" + verb) else { return nil }
      path = path.dropLast(verb.utf8.count + 1)
    }
    let parts = path.split(separator: "/", omittingEmptySubsequences: false)
    // Where each template segment's match starts in `parts`; `**` takes the rest.
    var starts: [Int] = []
    starts.reserveCapacity(self.segments.count + 1)
    var index = 0
    for segment in self.segments {
      starts.append(index)
      switch segment {
      case .multi:
        index = parts.count
      case .single:
        guard index < parts.count, !parts[index].isEmpty else { return nil }
        index += 1
      case .literal(let text):
        guard index < parts.count, Self.decode(parts[index], keepingSlashes: false) == text else { return nil }
        index += 1
      }
    }
    guard index == parts.count else { return nil }
    starts.append(index)
    var bindings: [Binding] = []
    for variable in self.variables {
      let from = starts[variable.segments.lowerBound]
      let to = starts[variable.segments.upperBound]
      let raw = parts[from..<to].joined(separator: "/")
      let single = variable.segments.count == 1 && self.segments[variable.segments.lowerBound] != .multi
      guard let value = Self.decode(Substring(raw), keepingSlashes: !single) else {
        throw Invalid(
          description:
            "the path's value for {\(variable.fieldPath.joined(separator: "."))} is not well percent-encoded UTF-8")
      }
      bindings.append(Binding(fieldPath: variable.fieldPath, value: value))
    }
    return bindings
  }

  /// Percent-decodes `text` (`%2F` and `%2f` kept when `keepingSlashes`); nil for a broken escape or
  /// bytes that are not UTF-8.
  public static func decode(_ text: Substring, keepingSlashes: Bool) -> String? {
    guard text.utf8.contains(UInt8(ascii: "%")) else { return String(text) }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(text.utf8.count)
    var iterator = text.utf8.makeIterator()
    while let byte = iterator.next() {
      guard byte == UInt8(ascii: "%") else {
        bytes.append(byte)
        continue
      }
      guard let first = iterator.next(), let second = iterator.next(), let high = Self.hexValue(first),
        let low = Self.hexValue(second)
      else {
        return nil
      }
      let decoded = high << 4 | low
      if keepingSlashes, decoded == UInt8(ascii: "/") {
        bytes.append(contentsOf: [byte, first, second])  // `%2F` or `%2f`, as sent
      } else {
        bytes.append(decoded)
      }
    }
    return String(validating: bytes, as: UTF8.self)
  }

  private static func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
  }

  /// A recursive-descent parser of the grammar above over the template's UTF-8 bytes.
  private struct Parser {
    let text: [UInt8]
    let template: String
    var at = 0
    var segments: [Segment] = []
    var variables: [Variable] = []

    mutating func parse() throws(Invalid) -> ([Segment], [Variable], String?) {
      guard self.peek() == UInt8(ascii: "/") else { throw self.fail("it does not start with /") }
      self.at += 1
      try self.parseSegments(inVariable: false)
      var verb: String?
      if self.peek() == UInt8(ascii: ":") {
        self.at += 1
        verb = try self.literal()
      }
      guard self.at == self.text.count else { throw self.fail("unexpected \"\(self.rest)\"") }
      if let multi = self.segments.firstIndex(of: .multi), multi != self.segments.count - 1 {
        throw self.fail("** must be the last segment")
      }
      return (self.segments, self.variables, verb)
    }

    mutating func parseSegments(inVariable: Bool) throws(Invalid) {
      while true {
        switch self.peek() {
        case UInt8(ascii: "*"):
          self.at += 1
          if self.peek() == UInt8(ascii: "*") {
            self.at += 1
            self.segments.append(.multi)
          } else {
            self.segments.append(.single)
          }
        case UInt8(ascii: "{"):
          guard !inVariable else { throw self.fail("variables do not nest") }
          try self.parseVariable()
        default:
          self.segments.append(.literal(try self.literal()))
        }
        guard self.peek() == UInt8(ascii: "/") else { return }
        self.at += 1
      }
    }

    mutating func parseVariable() throws(Invalid) {
      self.at += 1  // {
      var fieldPath: [String] = []
      repeat {
        if !fieldPath.isEmpty { self.at += 1 }  // .
        fieldPath.append(try self.identifier())
      } while self.peek() == UInt8(ascii: ".")
      let first = self.segments.count
      if self.peek() == UInt8(ascii: "=") {
        self.at += 1
        try self.parseSegments(inVariable: true)
      } else {
        self.segments.append(.single)
      }
      guard self.peek() == UInt8(ascii: "}") else { throw self.fail("a variable is not closed with }") }
      self.at += 1
      if self.variables.contains(where: { $0.fieldPath == fieldPath }) {
        throw self.fail("the field \(fieldPath.joined(separator: ".")) is bound twice")
      }
      self.variables.append(Variable(fieldPath: fieldPath, segments: first..<self.segments.count))
    }

    mutating func identifier() throws(Invalid) -> String {
      let start = self.at
      while let byte = self.peek(),
        byte == UInt8(ascii: "_") || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "z"))
          || (self.at > start && byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
      {
        self.at += 1
      }
      guard self.at > start else { throw self.fail("a variable's field path is not identifiers") }
      return String(decoding: self.text[start..<self.at], as: UTF8.self)
    }

    /// A literal: one or more bytes up to `/`, `:`, `}` or the end, none of `{`, `*`, `=`;
    /// percent-decoded.
    mutating func literal() throws(Invalid) -> String {
      let start = self.at
      while let byte = self.peek(), byte != UInt8(ascii: "/"), byte != UInt8(ascii: ":"), byte != UInt8(ascii: "}") {
        guard byte != UInt8(ascii: "{"), byte != UInt8(ascii: "*"), byte != UInt8(ascii: "=") else {
          throw self.fail("unexpected \"\(UnicodeScalar(byte))\" in a literal segment")
        }
        self.at += 1
      }
      guard self.at > start else { throw self.fail("an empty segment") }
      guard
        let text = PathTemplate.decode(
          Substring(String(decoding: self.text[start..<self.at], as: UTF8.self)), keepingSlashes: false)
      else {
        throw self.fail("a literal's % escape is broken")
      }
      return text
    }

    func peek() -> UInt8? {
      self.at < self.text.count ? self.text[self.at] : nil
    }

    var rest: String {
      String(decoding: self.text[self.at...], as: UTF8.self)
    }

    func fail(_ why: String) -> Invalid {
      Invalid(description: "path template \"\(self.template)\": \(why)")
    }
  }
}

import SluiceCodec
import SwiftProtobuf
import Testing

/// `google.api.http` rules read from method options, and path templates parsed and matched as
/// google/api/http.proto specifies.
@Suite("google.api.http rules and path templates")
struct HTTPRuleTests {
  // MARK: - Path templates

  func bindings(_ template: String, _ path: String) throws -> [String: String]? {
    try PathTemplate(template).match(Substring(path)).map { bindings in
      Dictionary(uniqueKeysWithValues: bindings.map { ($0.fieldPath.joined(separator: "."), $0.value) })
    }
  }

  @Test func variablesLiteralsAndWildcards() throws {
    #expect(try self.bindings("/v1/{name}", "/v1/ada") == ["name": "ada"])
    #expect(try self.bindings("/v1/hi/{name}", "/v1/hi/ada") == ["name": "ada"])
    #expect(try self.bindings("/v1/hi/{name}", "/v1/hello/ada") == nil)
    #expect(try self.bindings("/v1/hi/{name}", "/v1/hi/ada/more") == nil)
    #expect(try self.bindings("/v1/hi/{name}", "/v1/hi/") == nil)
    #expect(
      try self.bindings("/v1/{name=shelves/*/books/*}", "/v1/shelves/s1/books/b2") == ["name": "shelves/s1/books/b2"])
    #expect(try self.bindings("/v1/{name=shelves/*/books/*}", "/v1/shelves/s1/notes/b2") == nil)
    #expect(
      try self.bindings("/v1/shelves/{shelf}/books/{book.id}", "/v1/shelves/7/books/9") == [
        "shelf": "7", "book.id": "9",
      ]
    )
    #expect(try self.bindings("/v1/*/items", "/v1/x/items") == [:])
    #expect(try self.bindings("/v1/files/**", "/v1/files/a/b/c") == [:])
    #expect(try self.bindings("/v1/files/**", "/v1/files") == [:])
    #expect(try self.bindings("/v1/{path=files/**}", "/v1/files/a/b") == ["path": "files/a/b"])
  }

  @Test func customVerbs() throws {
    #expect(try self.bindings("/v1/{name=messages/*}:archive", "/v1/messages/m1:archive") == ["name": "messages/m1"])
    #expect(try self.bindings("/v1/{name=messages/*}:archive", "/v1/messages/m1") == nil)
    #expect(try self.bindings("/v1/{name=messages/*}:archive", "/v1/messages/m1:restore") == nil)
    #expect(try PathTemplate("/v1/{name=messages/*}:archive").verb == "archive")
    // Without a verb in the template, a colon is part of the segment.
    #expect(try self.bindings("/v1/{name}", "/v1/a:b") == ["name": "a:b"])
  }

  @Test func percentDecodingAsHttpProtoSpecifies() throws {
    // One segment: decoded whole, %2F included.
    #expect(try self.bindings("/v1/{name}", "/v1/a%2Fb%20c%C3%A9") == ["name": "a/b cé"])
    // Several segments: decoded except %2F / %2f, kept as sent.
    #expect(try self.bindings("/v1/{path=**}", "/v1/a/b%2Fc%2fd%20e") == ["path": "a/b%2Fc%2fd e"])
    // Literals compare decoded.
    #expect(try self.bindings("/v1/hi there/{name}", "/v1/hi%20there/x") == ["name": "x"])
    #expect(throws: PathTemplate.Invalid.self) { try self.bindings("/v1/{name}", "/v1/a%zz") }
    #expect(throws: PathTemplate.Invalid.self) { try self.bindings("/v1/{name}", "/v1/a%") }
    #expect(throws: PathTemplate.Invalid.self) { try self.bindings("/v1/{name}", "/v1/%FF") }
  }

  @Test(arguments: [
    ("v1/x", "does not start with /"),
    ("/v1//x", "empty segment"),
    ("/v1/**/x", "** must be the last"),
    ("/v1/{a={b}}", "do not nest"),
    ("/v1/{a", "not closed"),
    ("/v1/{1a}", "not identifiers"),
    ("/v1/{a}/{a}", "bound twice"),
    ("/v1/a*b", "in a literal"),
    ("/v1/x:", "empty segment"),
    ("/v1/x}", "unexpected"),
  ])
  func badTemplatesAreRefusedByName(template: String, why: String) {
    do {
      _ = try PathTemplate(template)
      Issue.record("\(template) parsed")
    } catch {
      #expect(error.description.contains(why), "\(error.description)")
      #expect(error.description.contains(template))
    }
  }

  // MARK: - Rules from method options

  /// A protobuf length-delimited field (tests only: the production code reads these bytes with
  /// the codec).
  static func field(_ number: Int, _ payload: [UInt8]) -> [UInt8] {
    varint(UInt64(number) << 3 | 2) + varint(UInt64(payload.count)) + payload
  }

  static func field(_ number: Int, _ text: String) -> [UInt8] {
    field(number, Array(text.utf8))
  }

  static func varint(_ value: UInt64) -> [UInt8] {
    var value = value
    var out: [UInt8] = []
    while value >= 0x80 {
      out.append(UInt8(value & 0x7F) | 0x80)
      value >>= 7
    }
    return out + [UInt8(value)]
  }

  /// MethodOptions bytes with `option (google.api.http) = {rule}` (field 72295728).
  static func options(_ rule: [UInt8]) throws -> Google_Protobuf_MethodOptions {
    try Google_Protobuf_MethodOptions(serializedBytes: field(72_295_728, rule))
  }

  @Test func rulesAndAdditionalBindingsFromOptions() throws {
    let rule =
      Self.field(2, "/v1/hi/{name}")
      + Self.field(11, Self.field(4, "/v1/hi") + Self.field(7, "*"))
      + Self.field(11, Self.field(8, Self.field(1, "HEAD") + Self.field(2, "/v1/hi/{name}:peek")))
      + Self.field(12, "result")
    let rules = try HTTPRule.rules(in: Self.options(rule))
    #expect(
      rules == [
        HTTPRule(method: "GET", pattern: "/v1/hi/{name}", responseBody: "result"),
        HTTPRule(method: "POST", pattern: "/v1/hi", body: "*"),
        HTTPRule(method: "HEAD", pattern: "/v1/hi/{name}:peek"),
      ])
    #expect(try HTTPRule.rules(in: Google_Protobuf_MethodOptions()) == [])
    // Other options (idempotency_level, field 34) around it change nothing.
    var withLevel = try Self.options(Self.field(6, "/v1/x"))
    withLevel.idempotencyLevel = .noSideEffects
    let again = try Google_Protobuf_MethodOptions(serializedBytes: try withLevel.serializedBytes() as [UInt8])
    #expect(try HTTPRule.rules(in: again) == [HTTPRule(method: "PATCH", pattern: "/v1/x")])
  }

  @Test func brokenRulesAreInvalidDescriptors() throws {
    // No pattern, and an HttpRule that is not one.
    for rule in [Self.field(7, "*"), [0x12, 0x09, 0x41]] {
      #expect(throws: CodecError.self) { try HTTPRule.rules(in: Self.options(rule)) }
    }
    let nested = Self.field(2, "/a") + Self.field(11, Self.field(2, "/b") + Self.field(11, Self.field(2, "/c")))
    #expect(throws: CodecError.self) { try HTTPRule.rules(in: Self.options(nested)) }
  }

  @Test func aRegistryCarriesEachMethodsRulesAndNamesABrokenOne() throws {
    func set(_ rule: [UInt8]) throws -> [UInt8] {
      var file = DescriptorValidationTests.file()
      file.service[0].method[0].options = try Self.options(rule)
      return try Google_Protobuf_FileDescriptorSet.with { $0.file = [file] }.serializedBytes()
    }
    let registry = try DescriptorRegistry(fileDescriptorSet: set(Self.field(2, "/v1/{name}") + Self.field(7, "*")))
    #expect(registry.methods.first?.httpRules == [HTTPRule(method: "GET", pattern: "/v1/{name}", body: "*")])
    let broken = try set(Self.field(7, "*"))
    do {
      _ = try DescriptorRegistry(fileDescriptorSet: broken)
      Issue.record("a rule without a pattern loaded")
    } catch {
      #expect(error.code == .invalidDescriptor)
      #expect(error.reason.contains("method pkg.S.Call"), "\(error.reason)")
    }
  }
}

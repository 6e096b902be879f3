import SluiceCodec
import SwiftProtobuf
import Testing

@testable import Sluice

/// Which rules become routes (and which are left out, named), and which route a request finds.
@Suite("REST routes from google.api.http rules")
struct RESTRoutesTests {
  /// `rest.proto`, package `pkg`: `message M { string name = 1; int32 count = 2; Inner inner = 3;
  /// repeated string tags = 4; message Inner { string id = 1; } }`, and `service S` with one unary
  /// method per rule, each `rpc CallN(M) returns (M)`, its `google.api.http` option the rule's bytes.
  static func registry(_ rules: [[UInt8]]) throws -> DescriptorRegistry {
    func field(
      _ name: String, _ number: Int32, _ type: Google_Protobuf_FieldDescriptorProto.TypeEnum,
      typeName: String? = nil, repeated: Bool = false
    ) -> Google_Protobuf_FieldDescriptorProto {
      .with {
        $0.name = name
        $0.number = number
        $0.type = type
        $0.label = repeated ? .repeated : .optional
        if let typeName { $0.typeName = typeName }
      }
    }
    let file = Google_Protobuf_FileDescriptorProto.with {
      $0.name = "rest.proto"
      $0.package = "pkg"
      $0.syntax = "proto3"
      $0.messageType = [
        .with {
          $0.name = "M"
          $0.field = [
            field("name", 1, .string), field("count", 2, .int32), field("inner", 3, .message, typeName: ".pkg.M.Inner"),
            field("tags", 4, .string, repeated: true),
          ]
          $0.nestedType = [
            .with {
              $0.name = "Inner"; $0.field = [field("id", 1, .string)]
            }
          ]
        }
      ]
    }
    var service = Google_Protobuf_ServiceDescriptorProto()
    service.name = "S"
    for (index, rule) in rules.enumerated() {
      var method = Google_Protobuf_MethodDescriptorProto()
      method.name = "Call\(index)"
      method.inputType = ".pkg.M"
      method.outputType = ".pkg.M"
      method.options = try Google_Protobuf_MethodOptions(serializedBytes: Self.field(72_295_728, rule))
      service.method.append(method)
    }
    var withService = file
    withService.service = [service]
    return try DescriptorRegistry(
      fileDescriptorSet: try Google_Protobuf_FileDescriptorSet.with { $0.file = [withService] }.serializedBytes())
  }

  static func field(_ number: Int, _ payload: [UInt8]) -> [UInt8] {
    func varint(_ value: Int) -> [UInt8] {
      var value = value
      var out: [UInt8] = []
      while value >= 0x80 {
        out.append(UInt8(value & 0x7F) | 0x80)
        value >>= 7
      }
      return out + [UInt8(value)]
    }
    return varint(number << 3 | 2) + varint(payload.count) + payload
  }

  /// An HttpRule: `method` is the HttpRule field (2 get, 3 put, 4 post, 5 delete, 6 patch).
  static func rule(_ method: Int, _ path: String, body: String? = nil, responseBody: String? = nil) -> [UInt8] {
    field(method, Array(path.utf8)) + (body.map { field(7, Array($0.utf8)) } ?? [])
      + (responseBody.map { field(12, Array($0.utf8)) } ?? [])
  }

  func target(_ routes: RESTRoutes, _ method: String, _ path: String) -> String {
    switch routes.match(httpMethod: method, path: Substring(path)) {
    case .route(let route, let bindings):
      route.method.methodName + " "
        + bindings.map { "\($0.fieldPath.joined(separator: "."))=\($0.value)" }
        .joined(separator: ",")
    case .methodNotAllowed(let allowed): "405 " + allowed.joined(separator: ",")
    case .badPath: "400"
    case .none: "404"
    }
  }

  @Test func theMostLiteralTemplateWinsAndOtherMethodsGet405() throws {
    let routes = RESTRoutes(
      registry: try Self.registry([
        Self.rule(2, "/v1/{name}"), Self.rule(2, "/v1/special"), Self.rule(2, "/v1/{name=**}"),
        Self.rule(4, "/v1/{name}:run", body: "*"), Self.rule(5, "/v1/things/{inner.id}"),
      ]))
    #expect(routes.problems == [])
    #expect(self.target(routes, "GET", "/v1/abc") == "Call0 name=abc")
    #expect(self.target(routes, "GET", "/v1/special") == "Call1 ")
    #expect(self.target(routes, "GET", "/v1/a/b") == "Call2 name=a/b")
    #expect(self.target(routes, "POST", "/v1/x:run") == "Call3 name=x")
    #expect(self.target(routes, "DELETE", "/v1/things/7") == "Call4 inner.id=7")
    #expect(self.target(routes, "GET", "/v1/things/7") == "Call2 name=things/7")
    #expect(self.target(routes, "PUT", "/v1/abc") == "405 GET")
    #expect(self.target(routes, "GET", "/v2/abc") == "404")
    #expect(self.target(routes, "GET", "/v1/%zz") == "400")
  }

  @Test func rulesThatCannotBeServedAreLeftOutByName() throws {
    let routes = RESTRoutes(
      registry: try Self.registry([
        Self.rule(2, "/v1/{name}"),
        Self.rule(2, "/v1/{count}"),  // the same shape as the first: a conflict
        Self.rule(2, "/v1/{missing}/x"),
        Self.rule(2, "/v1/{inner}/y"),  // a message
        Self.rule(2, "/v1/{tags}/z"),  // repeated
        Self.rule(4, "/v1/a", body: "nope"),
        Self.rule(4, "/v1/b", responseBody: "nope"),
        Self.rule(2, "/v1/**/c"),
      ]))
    #expect(routes.routes.map(\.method.methodName) == ["Call0"])
    let problems = routes.problems.joined(separator: "\n")
    for words in [
      "Call1: GET /v1/{count} conflicts with a rule of /pkg.S/Call0", "binds missing",
      "binds inner, which is not a single",
      "binds tags, which is not a single", "body \"nope\" is not a field", "response_body \"nope\"",
      "** must be the last segment",
    ] {
      #expect(problems.contains(words), "\(words) not in \(problems)")
    }
  }

  @Test func theRequestMessageFromBodyPathAndQuery() throws {
    let registry = try Self.registry([Self.rule(3, "/v1/{inner.id}", body: "tags")])
    let method = try #require(registry.methods.first)
    let message = try RESTRequest.message(
      rule: method.httpRules[0], input: method.input,
      bindings: [PathTemplate.Binding(fieldPath: ["inner", "id"], value: "7")], query: "count=3&name=a+b%21",
      body: .array([.string("x")]))
    #expect(message.serialized == #"{"tags":["x"],"inner":{"id":"7"},"count":"3","name":"a b!"}"#)
    // The body field from the query, or a field twice: refused.
    #expect(throws: (any Error).self) {
      try RESTRequest.message(rule: method.httpRules[0], input: method.input, bindings: [], query: "tags=y", body: nil)
    }
    #expect(throws: (any Error).self) {
      try RESTRequest.message(
        rule: method.httpRules[0], input: method.input, bindings: [], query: "count=1&count=2", body: nil)
    }
  }
}

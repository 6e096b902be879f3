public import SluiceCodec
internal import SluiceProtos

/// The OpenAPI 3.1 document of the REST routes (`GET /openapi.json`): a path and an operation per
/// route, its parameters (the path's variables, and for routes without `body: "*"` the request's
/// other scalar fields as query parameters), its request body, its response (the message or its
/// `response_body` field; a server stream as NDJSON, SSE or a JSON array; a request stream as an
/// NDJSON body), the error object, and a
/// schema per message as proto JSON writes it (64-bit integers as strings, enums by name, the
/// well-known types in their JSON forms). The protos' comments, when the descriptors carry them
/// (`ProtoComments`), are the descriptions of operations, schemas and properties. Each operation
/// also names its gRPC method (`x-grpc-method`) and its rule's body fields (`x-http-rule`).
enum OpenAPIDocument {
  static func make(
    _ routes: RESTRoutes, comments: ProtoComments = .none, output: JSONCodec.EncodingOptions = .init()
  ) -> JSONValue {
    var schemas = Schemas(comments: comments, output: output)
    var paths = JSONObject()
    var operationIds: Set<String> = []
    for route in routes.routes {
      let (path, parameters) = Self.openAPIPath(route.template, input: route.method.input, schemas: &schemas)
      let verb = route.httpMethod.lowercased()
      guard ["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(verb) else { continue }
      var item: JSONObject
      if case .object(let existing)? = paths[path] { item = existing } else { item = JSONObject() }
      guard item[verb] == nil else { continue }  // an equivalent template of another rule: the first is kept
      var operationId = "\(route.method.serviceName).\(route.method.methodName)"
      var suffix = 2
      while operationIds.contains(operationId) {
        operationId = "\(route.method.serviceName).\(route.method.methodName)_\(suffix)"
        suffix += 1
      }
      operationIds.insert(operationId)
      item.members.append(
        (
          key: verb,
          value: .object(
            Self.operation(route, id: operationId, pathParameters: parameters, schemas: &schemas))
        ))
      if let index = paths.members.firstIndex(where: { $0.key == path }) {
        paths.members[index].value = .object(item)
      } else {
        paths.members.append((key: path, value: .object(item)))
      }
    }
    schemas.components.members.append(
      (
        key: "google.rpc.Status",
        value: .object([
          "type": .string("object"),
          "description": .string("The error of a call: gRPC's status code, its message, and the call's trailers."),
          "properties": .object([
            "code": .object(["type": .string("integer"), "format": .string("int32")]),
            "message": .object(["type": .string("string")]),
            "trailers": .object([
              "type": .string("object"),
              "additionalProperties": .object(["type": .string("array"), "items": .object(["type": .string("string")])]
              ),
            ]),
          ]),
          "required": .array([.string("code")]),
        ])
      ))
    return .object([
      "openapi": .string("3.1.0"),
      "info": .object([
        "title": .string("REST routes served by Sluice"),
        "description": .string("From the google.api.http rules of the methods Sluice serves, and --http-rule."),
        "version": .string("1"),
      ]),
      "paths": .object(paths),
      "components": .object(["schemas": .object(schemas.components)]),
    ])
  }

  /// The template as an OpenAPI path (`/v1/{name}:archive`; a variable over several segments is
  /// one parameter, a wildcard outside any variable a parameter of its own) and its path
  /// parameters.
  private static func openAPIPath(
    _ template: PathTemplate, input: SluiceCodec.MessageDescriptor, schemas: inout Schemas
  ) -> (String, [JSONValue]) {
    var parts: [String] = []
    var parameters: [JSONValue] = []
    var index = 0
    var anonymous = 0
    while index < template.segments.count {
      if let variable = template.variables.first(where: { $0.segments.lowerBound == index }) {
        let name = variable.fieldPath.joined(separator: ".")
        parts.append("{\(name)}")
        let pattern = template.segments[variable.segments].map(Self.text).joined(separator: "/")
        var schema: JSONObject = ["type": .string("string")]
        if let field = Self.field(variable.fieldPath, in: input) {
          schema = Self.schema(field, schemas: &schemas)
        }
        var parameter: JSONObject = [
          "name": .string(name), "in": .string("path"), "required": .bool(true), "schema": .object(schema),
        ]
        if pattern != "*" {
          parameter.members.append(
            (key: "description", value: .string("matches \(pattern); `/` inside it is not escaped")))
        }
        parameters.append(.object(parameter))
        index = max(variable.segments.upperBound, index + 1)
        continue
      }
      switch template.segments[index] {
      case .literal(let text):
        parts.append(text)
      case .single, .multi:
        anonymous += 1
        parts.append("{_\(anonymous)}")
        parameters.append(
          .object([
            "name": .string("_\(anonymous)"), "in": .string("path"), "required": .bool(true),
            "schema": .object(["type": .string("string")]),
          ]))
      }
      index += 1
    }
    return ("/" + parts.joined(separator: "/") + (template.verb.map { ":" + $0 } ?? ""), parameters)
  }

  private static func text(_ segment: PathTemplate.Segment) -> String {
    switch segment {
    case .literal(let text): text
    case .single: "*"
    case .multi: "**"
    }
  }

  private static func field(_ path: [String], in input: SluiceCodec.MessageDescriptor) -> FieldDescriptor? {
    var message: SluiceCodec.MessageDescriptor? = input
    var found: FieldDescriptor?
    for name in path {
      found = message?.field(named: name)
      message = found?.message
    }
    return found
  }

  private static func operation(
    _ route: RESTRoutes.Route, id: String, pathParameters: [JSONValue], schemas: inout Schemas
  ) -> JSONObject {
    let method = route.method
    var parameters = pathParameters
    let bound = Set(route.template.variables.compactMap { $0.fieldPath.first })
    if route.rule.body != "*" {
      for field in method.input.fields
      where !bound.contains(field.name) && field.name != route.rule.body && !field.isMap
        && (field.kind != .message || field.isScalarWellKnownType)
      {
        var schema = Self.schema(field, schemas: &schemas)
        if field.isRepeated { schema = ["type": .string("array"), "items": .object(schema)] }
        parameters.append(
          .object([
            "name": .string(schemas.name(field)), "in": .string("query"), "required": .bool(false),
            "schema": .object(schema),
          ]))
      }
    }
    var operation: JSONObject = [
      "operationId": .string(id),
      "summary": .string("\(method.path) (\(method.kind))"),
      "tags": .array([.string(method.serviceName)]),
    ]
    if let comment = schemas.comments["\(method.serviceName).\(method.methodName)"] {
      operation.members.append((key: "description", value: .string(comment)))
    }
    // The method and the rule's body fields, for a client that builds requests from messages (the
    // explorer page): OpenAPI has no words for them.
    operation.members.append((key: "x-grpc-method", value: .string(method.path)))
    var rule: JSONObject = ["body": .string(route.rule.body)]
    if !route.rule.responseBody.isEmpty {
      rule.members.append((key: "responseBody", value: .string(route.rule.responseBody)))
    }
    operation.members.append((key: "x-http-rule", value: .object(rule)))
    if !parameters.isEmpty { operation.members.append((key: "parameters", value: .array(parameters))) }
    if RESTRequest.rawRequestBody(route.rule, input: method.input) {
      // google.api.HttpBody: the body as it is, of any type.
      operation.members.append(
        (key: "requestBody", value: .object(["required": .bool(false), "content": .object(["*/*": .object([:])])])))
    } else if !route.rule.body.isEmpty {
      let schema: JSONObject
      if route.rule.body == "*" {
        schema = schemas.reference(method.input)
      } else if let field = method.input.field(named: route.rule.body) {
        schema = Self.schema(field, schemas: &schemas, wholeField: true)
      } else {
        schema = [:]
      }
      // A stream of requests is NDJSON: each line is one message (`schema`).
      let mediaType = method.kind.clientStreams ? "application/x-ndjson" : "application/json"
      var body: JSONObject = [
        "required": .bool(false),
        "content": .object([mediaType: .object(["schema": .object(schema)])]),
      ]
      if method.kind.clientStreams {
        body.members.append(
          (key: "description", value: .string("A stream of requests: one per line, each as this schema")))
      }
      operation.members.append((key: "requestBody", value: .object(body)))
    }
    var response = schemas.reference(method.output)
    if !route.rule.responseBody.isEmpty, let field = method.output.field(named: route.rule.responseBody) {
      response = Self.schema(field, schemas: &schemas, wholeField: true)
    }
    let content: JSONObject
    if RESTRequest.rawResponseBody(route.rule, output: method.output) {
      content = ["*/*": .object([:])]  // google.api.HttpBody: its own type
    } else if method.kind.serverStreams {
      content = [
        "application/x-ndjson": .object(["schema": .object(response)]),
        "text/event-stream": .object(["schema": .object(["type": .string("string")])]),
        "application/json": .object(["schema": .object(["type": .string("array"), "items": .object(response)])]),
      ]
    } else {
      content = ["application/json": .object(["schema": .object(response)])]
    }
    operation.members.append(
      (
        key: "responses",
        value: .object([
          "200": .object([
            "description": .string(
              method.kind.serverStreams
                ? "The stream's messages, one a line (NDJSON), an event (SSE) or an array element, by Accept"
                : "The response message"),
            "content": .object(content),
          ]),
          "default": .object([
            "description": .string("An error, with gRPC's status code and HTTP mapping"),
            "content": .object([
              "application/json": .object([
                "schema": .object(["$ref": .string("#/components/schemas/google.rpc.Status")])
              ])
            ]),
          ]),
        ])
      ))
    return operation
  }

  /// A field's JSON schema (for a repeated field or a map, the whole field when `wholeField`, else
  /// one value).
  private static func schema(_ field: FieldDescriptor, schemas: inout Schemas, wholeField: Bool = false)
    -> JSONObject
  {
    if wholeField, field.isMap, let entry = field.message, let value = entry.field(named: "value") {
      return ["type": .string("object"), "additionalProperties": .object(Self.schema(value, schemas: &schemas))]
    }
    if wholeField, field.isRepeated {
      return ["type": .string("array"), "items": .object(Self.schema(field, schemas: &schemas))]
    }
    switch field.kind {
    case .bool: return ["type": .string("boolean")]
    case .string: return ["type": .string("string")]
    case .bytes: return ["type": .string("string"), "contentEncoding": .string("base64")]
    case .enumeration:
      if schemas.output.enumsAsIntegers { return ["type": .string("integer"), "format": .string("int32")] }
      return field.enumValues.isEmpty
        ? ["type": .string("string")]
        : ["type": .string("string"), "enum": .array(field.enumValues.map { .string($0) })]
    case .number:
      switch field.protoKind {
      case "int64", "sint64", "sfixed64":
        return ["type": .string("string"), "format": .string("int64")]
      case "uint64", "fixed64":
        return ["type": .string("string"), "format": .string("uint64")]
      case "double", "float":
        return ["type": .string("number"), "format": .string(field.protoKind)]
      case "uint32", "fixed32":
        return ["type": .string("integer"), "format": .string("int64"), "minimum": .number("0")]
      default:
        return ["type": .string("integer"), "format": .string("int32")]
      }
    case .message:
      guard let message = field.message else { return [:] }
      return schemas.reference(message)
    }
  }

  /// The message schemas made so far, each once, by full name.
  struct Schemas {
    var components = JSONObject()
    let comments: ProtoComments
    /// The gateway's JSON output options (`--json-output`): the names and enum forms answers have.
    let output: JSONCodec.EncodingOptions
    private var made: Set<String> = []

    init(comments: ProtoComments, output: JSONCodec.EncodingOptions) {
      self.comments = comments
      self.output = output
    }

    /// A field's name in JSON as the gateway writes it (requests take either).
    func name(_ field: FieldDescriptor) -> String {
      self.output.preserveProtoNames ? field.name : field.jsonName
    }

    /// A `$ref` to `message`'s schema (made on first use), or a well-known type's own schema.
    mutating func reference(_ message: SluiceCodec.MessageDescriptor) -> JSONObject {
      if let known = Self.wellKnown(message.fullName) { return known }
      let name = message.fullName
      if !self.made.contains(name) {
        self.made.insert(name)
        var properties = JSONObject()
        for field in message.fields {
          var schema: JSONObject
          if field.isMap, let entry = field.message, let value = entry.field(named: "value") {
            schema = [
              "type": .string("object"),
              "additionalProperties": .object(OpenAPIDocument.schema(value, schemas: &self)),
            ]
          } else if field.isRepeated {
            schema = ["type": .string("array"), "items": .object(OpenAPIDocument.schema(field, schemas: &self))]
          } else {
            schema = OpenAPIDocument.schema(field, schemas: &self)
          }
          if let comment = self.comments["\(name).\(field.name)"] {
            schema.members.append((key: "description", value: .string(comment)))
          }
          properties.members.append((key: self.name(field), value: .object(schema)))
        }
        var schema: JSONObject = ["type": .string("object"), "properties": .object(properties)]
        if let comment = self.comments[name] { schema.members.append((key: "description", value: .string(comment))) }
        self.components.members.append((key: name, value: .object(schema)))
      }
      return ["$ref": .string("#/components/schemas/\(name)")]
    }

    /// The JSON forms protobuf gives the well-known types.
    static func wellKnown(_ fullName: String) -> JSONObject? {
      switch fullName {
      case "google.protobuf.Timestamp": ["type": .string("string"), "format": .string("date-time")]
      case "google.protobuf.Duration": ["type": .string("string"), "pattern": .string("^-?[0-9]+(\\.[0-9]+)?s$")]
      case "google.protobuf.FieldMask": ["type": .string("string")]
      case "google.protobuf.Struct": ["type": .string("object")]
      case "google.protobuf.Value": [:]
      case "google.protobuf.ListValue": ["type": .string("array")]
      case "google.protobuf.Empty": ["type": .string("object")]
      case "google.protobuf.Any":
        ["type": .string("object"), "properties": .object(["@type": .object(["type": .string("string")])])]
      case "google.protobuf.BoolValue": ["type": .array([.string("boolean"), .string("null")])]
      case "google.protobuf.StringValue", "google.protobuf.BytesValue":
        ["type": .array([.string("string"), .string("null")])]
      case "google.protobuf.Int32Value", "google.protobuf.UInt32Value":
        ["type": .array([.string("integer"), .string("null")])]
      case "google.protobuf.Int64Value", "google.protobuf.UInt64Value":
        ["type": .array([.string("string"), .string("null")])]
      case "google.protobuf.DoubleValue", "google.protobuf.FloatValue":
        ["type": .array([.string("number"), .string("null")])]
      default: nil
      }
    }
  }
}

/// The OpenAPI document outside a running gateway (`sluice openapi`).
public enum OpenAPIExport {
  /// The OpenAPI 3.1 document of `registry`'s REST routes (their `google.api.http` rules, or
  /// `httpRules` in their place), as JSON, and the rules left out with why.
  public static func document(_ registry: DescriptorRegistry, httpRules: [ConfiguredHTTPRule]) -> (
    json: [UInt8], problems: [String]
  ) {
    let routes = RESTRoutes(registry: registry, configured: httpRules)
    return (
      OpenAPIDocument.make(routes, comments: ProtoComments(files: registry.files)).serializedBytes, routes.problems
    )
  }

  /// The descriptors of the services the gateway hosts itself (the seed's), with their imports.
  public static var hostedDescriptors: [UInt8] { SluiceDescriptors.fileDescriptorSet }
}

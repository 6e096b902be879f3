public import SwiftProtobuf

/// One REST mapping of a method, from its `google.api.http` option (google/api/http.proto): the
/// HTTP method and path template a request uses, and which part of the request and response
/// messages travel in the HTTP bodies. An option's `additional_bindings` are rules of their own.
public struct HTTPRule: Sendable, Hashable {
  /// `GET`, `PUT`, `POST`, `DELETE`, `PATCH`, or a `custom` pattern's kind as written.
  public var method: String
  /// The path template as written, e.g. `/v1/{name=shelves/*}/books:archive`.
  public var pattern: String
  /// The request field that is the HTTP body: `""` for none, `"*"` for every field not bound by
  /// the path, else a top-level field's proto name.
  public var body: String
  /// The response field that is the HTTP body; `""` for the whole response message.
  public var responseBody: String

  public init(method: String, pattern: String, body: String = "", responseBody: String = "") {
    self.method = method
    self.pattern = pattern
    self.body = body
    self.responseBody = responseBody
  }

  /// The rules a method's options declare: the `google.api.http` extension (field 72295728 of
  /// `MethodOptions`), then its `additional_bindings` in order; none when the option is absent.
  ///
  /// The option arrives as an unknown field of SwiftProtobuf's `MethodOptions` (no generated code
  /// knows the extension); it is read with this library's own codec through a descriptor of
  /// google/api/http.proto built below, so no protobuf parsing is written by hand here.
  /// - Throws: ``CodecError`` `invalidDescriptor` when the option's bytes are not an `HttpRule`, or
  ///   a rule has no pattern or two.
  public static func rules(in options: Google_Protobuf_MethodOptions) throws(CodecError) -> [HTTPRule] {
    let bytes = [UInt8](options.unknownFields.data)
    guard !bytes.isEmpty else { return [] }
    let value: JSONValue
    do {
      let json = try Self.codec.json(fromBinary: bytes, as: Self.carrier)
      value = try Self.codec.parseJSON(json)
    } catch {
      throw CodecError(code: .invalidDescriptor, reason: "its google.api.http option does not parse: \(error.reason)")
    }
    guard case .object(let option)? = value.objectValue?["http"] else { return [] }
    var rules = [try Self.rule(option)]
    if case .array(let bindings)? = option["additional_bindings"] {
      for case .object(let binding) in bindings {
        if binding["additional_bindings"] != nil {
          throw CodecError(
            code: .invalidDescriptor, reason: "its google.api.http additional_bindings nest additional_bindings")
        }
        rules.append(try Self.rule(binding))
      }
    }
    return rules
  }

  private static func rule(_ object: JSONObject) throws(CodecError) -> HTTPRule {
    func string(_ key: String) -> String? {
      if case .string(let value)? = object[key] { value } else { nil }
    }
    var patterns: [(String, String)] = []
    for method in ["get", "put", "post", "delete", "patch"] {
      if let path = string(method) { patterns.append((method.uppercased(), path)) }
    }
    if case .object(let custom)? = object["custom"], case .string(let kind)? = custom["kind"],
      case .string(let path)? = custom["path"]
    {
      patterns.append((kind, path))
    }
    guard patterns.count == 1, let (method, pattern) = patterns.first, !method.isEmpty else {
      throw CodecError(
        code: .invalidDescriptor, reason: "a google.api.http rule needs exactly one HTTP method and path")
    }
    return HTTPRule(
      method: method, pattern: pattern, body: string("body") ?? "", responseBody: string("response_body") ?? "")
  }

  /// google/api/http.proto's `HttpRule` and `CustomHttpPattern`, and a message whose field
  /// 72295728 is the extension, to read `MethodOptions` bytes with.
  private static let carrier: MessageDescriptor = Self.descriptors.carrier
  private static let codec: JSONCodec = Self.descriptors.codec

  private static let descriptors: (codec: JSONCodec, carrier: MessageDescriptor) = {
    func field(
      _ name: String, _ number: Int32, _ type: Google_Protobuf_FieldDescriptorProto.TypeEnum = .string,
      message: String? = nil, repeated: Bool = false, oneof: Int32? = nil
    ) -> Google_Protobuf_FieldDescriptorProto {
      .with {
        $0.name = name
        $0.jsonName = name
        $0.number = number
        $0.type = type
        $0.label = repeated ? .repeated : .optional
        if let message { $0.typeName = message }
        if let oneof { $0.oneofIndex = oneof }
      }
    }
    let file = Google_Protobuf_FileDescriptorProto.with {
      $0.name = "sluice/google_api_http.proto"
      $0.package = "google.api"
      $0.syntax = "proto3"
      $0.messageType = [
        .with {
          $0.name = "HttpRule"
          $0.field = [
            field("selector", 1),
            field("get", 2, oneof: 0), field("put", 3, oneof: 0), field("post", 4, oneof: 0),
            field("delete", 5, oneof: 0), field("patch", 6, oneof: 0),
            field("custom", 8, .message, message: ".google.api.CustomHttpPattern", oneof: 0),
            field("body", 7), field("response_body", 12),
            field("additional_bindings", 11, .message, message: ".google.api.HttpRule", repeated: true),
          ]
          $0.oneofDecl = [.with { $0.name = "pattern" }]
        },
        .with {
          $0.name = "CustomHttpPattern"
          $0.field = [field("kind", 1), field("path", 2)]
        },
        .with {
          $0.name = "MethodOptionsHttp"
          $0.field = [field("http", 72_295_728, .message, message: ".google.api.HttpRule")]
        },
      ]
    }
    do {
      let set = Google_Protobuf_FileDescriptorSet.with { $0.file = [file] }
      let registry = try DescriptorRegistry(fileDescriptorSet: try set.serializedBytes())
      guard let carrier = registry.message(fullName: "google.api.MethodOptionsHttp") else {
        fatalError("HTTPRule: the built-in google.api.http descriptor lost its carrier message")
      }
      let codec = JSONCodec(
        registry: registry, encoding: .init(emitDefaultValues: false, preserveProtoNames: true),
        decoding: .init(ignoreUnknownFields: true))
      return (codec, carrier)
    } catch {
      // Built from constants above, never from input: a failure is a bug in this file.
      fatalError("HTTPRule: the built-in google.api.http descriptor does not load: \(error)")
    }
  }()
}

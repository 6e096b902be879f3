internal import GRPCCore
internal import NIOConcurrencyHelpers
public import SluiceCodec

/// What every JSON front end shares: method lookup and JSON translation driven by descriptors.
/// Nothing in here is written per method.
public struct JSONBridge: Sendable {
  /// The descriptors of every method the bridge can call.
  public let registry: DescriptorRegistry
  /// Translates JSON to protobuf wire bytes and back.
  public private(set) var codec: JSONCodec
  /// The REST routes of the registry's `google.api.http` rules.
  let rest: RESTRoutes
  /// Their OpenAPI 3.1 document, serialized (`GET /openapi.json`).
  let openAPIDocument: [UInt8]
  /// Whether a REST query parameter that names no field is skipped rather than refused
  /// (`--rest-ignore-unknown-query`).
  let restIgnoresUnknownQuery: Bool

  /// Creates a bridge.
  /// - Parameters:
  ///   - registry: The descriptors of every callable method.
  ///   - codec: The JSON translation, with its limits.
  ///   - httpRules: REST rules that replace the descriptors' own for their methods (`--http-rule`).
  ///   - restIgnoresUnknownQuery: Whether a REST query parameter that names no field is skipped.
  public init(
    registry: DescriptorRegistry, codec: JSONCodec, httpRules: [ConfiguredHTTPRule] = [],
    restIgnoresUnknownQuery: Bool = false
  ) {
    self.registry = registry
    self.restIgnoresUnknownQuery = restIgnoresUnknownQuery
    self.codec = codec
    self.rest = RESTRoutes(registry: registry, configured: httpRules)
    self.openAPIDocument =
      OpenAPIDocument.make(self.rest, comments: ProtoComments(files: registry.files), output: codec.encoding)
      .serializedBytes
  }

  /// The same bridge, writing JSON with `options`.
  func writing(_ options: JSONCodec.EncodingOptions) -> JSONBridge {
    var bridge = self
    bridge.codec = JSONCodec(registry: self.registry, encoding: options, decoding: self.codec.decoding)
    return bridge
  }

  /// The method at `/<package>.<Service>/<Method>`, or `UNIMPLEMENTED`.
  func method(path: String) throws(RPCError) -> SluiceCodec.MethodDescriptor {
    guard let method = self.registry.method(path: path) else {
      throw GRPCErrors.unknownMethod(path)
    }
    return method
  }

  /// The object of a control frame (PROTOCOL.md: its first key starts with `$`), or nil for a
  /// message.
  static func controlFrame(_ value: JSONValue) -> JSONObject? {
    guard case .object(let object) = value, let first = object.members.first, first.key.hasPrefix("$") else {
      return nil
    }
    return object
  }

  /// A JSON request message as protobuf wire bytes, or `INVALID_ARGUMENT` naming the problem.
  func encodeRequest(_ value: JSONValue, for method: SluiceCodec.MethodDescriptor) throws(RPCError) -> [UInt8] {
    do {
      return try self.codec.binary(from: value, as: method.input)
    } catch {
      throw GRPCErrors.invalidJSONMessage(method.input.fullName, error.message)
    }
  }

  /// A response message as JSON text, or `INTERNAL` when the service sent bytes that do not parse.
  func decodeResponse(_ bytes: [UInt8], for method: SluiceCodec.MethodDescriptor) throws(RPCError) -> [UInt8] {
    do {
      return try self.codec.json(fromBinary: bytes, as: method.output)
    } catch {
      throw GRPCErrors.invalidResponse(method.output.fullName)
    }
  }

  /// Parses one JSON document under the codec's limits, or `INVALID_ARGUMENT`.
  func parse(_ bytes: some Collection<UInt8>) throws(RPCError) -> JSONValue {
    do {
      return try self.codec.parseJSON(bytes)
    } catch {
      throw GRPCErrors.invalidJSON(error)
    }
  }
}

/// The JSON bridge in use, swapped whole when the descriptors change (`--upstream-reflection` at
/// start, on SIGHUP): a WebSocket session or an HTTP call takes the current one when it begins and
/// keeps it to its end, so no call sees two sets of descriptors.
final class JSONBridgeSource: Sendable {
  private let bridge: NIOLockedValueBox<JSONBridge>

  init(_ bridge: JSONBridge) {
    self.bridge = NIOLockedValueBox(bridge)
  }

  var current: JSONBridge { self.bridge.withLockedValue { $0 } }

  func replace(with bridge: JSONBridge) {
    self.bridge.withLockedValue { $0 = bridge }
  }
}

extension SluiceCodec.MethodDescriptor {
  /// Whether the client sends exactly one message (unary and server-streaming methods).
  var takesOneRequest: Bool {
    self.kind == .unary || self.kind == .serverStreaming
  }
}

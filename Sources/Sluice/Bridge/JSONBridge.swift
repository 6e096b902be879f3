internal import GRPCCore
public import SluiceCodec

/// What every JSON front end shares: method lookup and JSON translation driven by descriptors,
/// and the `RPCCaller` that reaches the services. Nothing in here is written per method.
public struct JSONBridge: Sendable {
  /// The descriptors of every method the bridge can call.
  public let registry: DescriptorRegistry
  /// Translates JSON to protobuf wire bytes and back.
  public let codec: JSONCodec
  /// Runs the calls.
  public let caller: any RPCCaller
  /// Cancellation and response credit for calls on the in-process transport; nil for transports
  /// that have both themselves (HTTP/2 resets streams and has flow control).
  let callControl: InProcessCallControl?

  /// Creates a bridge.
  /// - Parameters:
  ///   - registry: The descriptors of every callable method.
  ///   - codec: The JSON translation, with its limits.
  ///   - caller: The client that reaches the services.
  ///   - callControl: For the in-process transport: the interceptor on its server.
  public init(
    registry: DescriptorRegistry,
    codec: JSONCodec,
    caller: any RPCCaller,
    callControl: InProcessCallControl? = nil
  ) {
    self.registry = registry
    self.codec = codec
    self.caller = caller
    self.callControl = callControl
  }

  /// Tags `metadata` so that `abandon(_:)` and `delivered(_:)` reach the call's server side;
  /// returns the tag.
  func tag(_ metadata: inout Metadata) -> String? {
    guard self.callControl != nil else { return nil }
    let id = String(UInt64.random(in: .min ... .max), radix: 36)
    metadata.replaceOrAddString(id, forKey: InProcessCallControl.metadataKey)
    return id
  }

  /// The client of a tagged call went away: cancel the server side too.
  func abandon(_ tag: String?) {
    if let tag { self.callControl?.cancel(id: tag) }
  }

  /// One response of a tagged call reached its client: the service may produce one more.
  func delivered(_ tag: String?) {
    if let tag { self.callControl?.grant(id: tag) }
  }

  /// The method at `/<package>.<Service>/<Method>`, or `UNIMPLEMENTED`.
  func method(path: String) throws(RPCError) -> SluiceCodec.MethodDescriptor {
    guard let method = self.registry.method(path: path) else {
      throw GRPCErrors.unknownMethod(path)
    }
    return method
  }

  /// A JSON request message as protobuf wire bytes, or `INVALID_ARGUMENT` naming the problem.
  func encodeRequest(_ value: JSONValue, for method: SluiceCodec.MethodDescriptor) throws(RPCError) -> [UInt8] {
    do {
      return try self.codec.binary(from: value, as: method.input)
    } catch {
      throw RPCError(code: .invalidArgument, message: "invalid \(method.input.fullName): \(error.message)")
    }
  }

  /// A response message as JSON text, or `INTERNAL` when the service sent bytes that do not parse.
  func decodeResponse(_ bytes: [UInt8], for method: SluiceCodec.MethodDescriptor) throws(RPCError) -> [UInt8] {
    do {
      return try self.codec.json(fromBinary: bytes, as: method.output)
    } catch {
      throw RPCError(code: .internalError, message: "the service sent an invalid \(method.output.fullName)")
    }
  }

  /// Parses one JSON document under the codec's limits, or `INVALID_ARGUMENT`.
  func parse(_ bytes: some Collection<UInt8>) throws(RPCError) -> JSONValue {
    do {
      return try self.codec.parseJSON(bytes)
    } catch {
      let code: RPCError.Code = error.code == .tooLarge ? .resourceExhausted : .invalidArgument
      throw RPCError(code: code, message: error.message)
    }
  }
}

extension SluiceCodec.MethodDescriptor {
  /// The gRPC descriptor of the same method.
  var grpcDescriptor: GRPCCore.MethodDescriptor {
    GRPCCore.MethodDescriptor(fullyQualifiedService: self.serviceName, method: self.methodName)
  }

  /// Whether the client sends exactly one message (unary and server-streaming methods).
  var takesOneRequest: Bool {
    self.kind == .unary || self.kind == .serverStreaming
  }
}

public import SluiceCodec

extension GatewayConfiguration {
  /// What the gateway hosts itself, and what its JSON front ends translate with.
  public struct Services: Sendable {
    /// Whether Sluice hosts the seed services itself (`--hosted seed`, the default) or only
    /// proxies (`--hosted none`).
    public var hostsSeed: Bool
    /// The seed services' pause between `List` sends and after each `Record` receive.
    public var pace: Duration
    /// How many responses `proto.StreamService/List` sends (the seed sends 7).
    public var listCount: Int
    /// Whether the native port also hosts `grpc.testing.TestService`, the service of gRPC's
    /// cross-language interop tests (for checking the gateway with gRPC's interop clients).
    public var interopService: Bool
    /// Serialized `FileDescriptorSet`s (`--descriptor-set`) whose methods the JSON front ends can
    /// translate, besides the hosted ones.
    public var descriptorSets: [[UInt8]]
    /// REST rules for methods whose protos cannot be changed (`--http-rule`): each replaces the
    /// method's own `google.api.http` rules.
    public var httpRules: [ConfiguredHTTPRule]
    /// How the JSON front ends write answers (`--json-output`); a request's `Sluice-JSON-Output`
    /// header applies over it.
    public var jsonOutput: JSONCodec.EncodingOptions
    /// Whether JSON request members that name no field (and enum names that name no value) are
    /// skipped rather than refused with INVALID_ARGUMENT (`--json-ignore-unknown-fields`).
    public var jsonIgnoresUnknownFields: Bool
    /// Whether a REST query parameter that names no field is skipped rather than refused with 400
    /// (`--rest-ignore-unknown-query`).
    public var restIgnoresUnknownQuery: Bool

    public init(
      hostsSeed: Bool = true,
      pace: Duration = .seconds(1),
      listCount: Int = 7,
      interopService: Bool = false,
      descriptorSets: [[UInt8]] = [],
      httpRules: [ConfiguredHTTPRule] = [],
      jsonOutput: JSONCodec.EncodingOptions = .init(),
      jsonIgnoresUnknownFields: Bool = false,
      restIgnoresUnknownQuery: Bool = false
    ) {
      self.hostsSeed = hostsSeed
      self.pace = pace
      self.listCount = listCount
      self.interopService = interopService
      self.descriptorSets = descriptorSets
      self.httpRules = httpRules
      self.jsonOutput = jsonOutput
      self.jsonIgnoresUnknownFields = jsonIgnoresUnknownFields
      self.restIgnoresUnknownQuery = restIgnoresUnknownQuery
    }

    /// The seed services at the seed's pace (1 s, 7 `List` responses).
    public static let defaults = Services()
  }

  /// The gRPC servers behind the gateway.
  public struct Upstream: Sendable {
    /// The servers, by service (`--upstream`).
    public var routes: [UpstreamRoute]
    /// TLS to upstreams (`--upstream-tls`); nil connects in plaintext (h2c).
    public var tls: UpstreamTLS?
    /// `--upstream-reflection`: the upstreams are asked for their descriptors over gRPC server
    /// reflection before the ports open, again every 10 s until they answer, and on SIGHUP.
    public var reflection: Bool

    public init(routes: [UpstreamRoute] = [], tls: UpstreamTLS? = nil, reflection: Bool = false) {
      self.routes = routes
      self.tls = tls
      self.reflection = reflection
    }

    /// None.
    public static let defaults = Upstream()
  }
}

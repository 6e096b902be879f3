internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHPACK

/// What every call shares, whichever front end it came in on (native gRPC, WebSocket, HTTP
/// JSON): routing, the concurrent-RPC limit, bearer authentication, and the metrics and log line
/// of `RPCMonitor`. Each front end keeps a `CallLifecycle` per call, which asks `begin` when the
/// call starts and `release` once it has ended; both run on the call's event loop and take no lock
/// but the limiter's atomic and the monitor's counts.
final class RPCEngine: Sendable {
  let router: RPCRouter
  let limiter: RPCLimiter
  /// With `--require-bearer`: the slots of calls let in without a token (health probes), a
  /// twentieth of `limiter`'s (at least 16), apart from them.
  let probeLimiter: RPCLimiter
  let monitor: RPCMonitor
  let authenticator: BearerAuthenticator?
  /// `--forward-bearer`: a verified `authorization` goes on to services and upstreams.
  let forwardsBearer: Bool
  let maximumMessageBytes: Int
  /// `--max-buffered-request-bytes`: the one budget of unfinished request bytes, over every
  /// transport.
  let budget: RequestByteBudget
  /// `--body-timeout`: how long one request message may take to arrive once begun, on every
  /// transport.
  let bodyTimeout: Duration
  /// `--echo-metadata`: response headers repeat the request metadata as `echo-<key>`.
  let echoMetadata: Bool
  let logger: Logger
  /// `--otlp-endpoint`: a span per call; nil when spans are not exported.
  let tracing: CallTracing?

  init(
    router: RPCRouter,
    limiter: RPCLimiter,
    monitor: RPCMonitor,
    authenticator: BearerAuthenticator?,
    forwardsBearer: Bool = false,
    maximumMessageBytes: Int,
    budget: RequestByteBudget = RequestByteBudget(limit: 256 << 20),
    bodyTimeout: Duration = .seconds(30),
    echoMetadata: Bool,
    logger: Logger,
    tracing: CallTracing? = nil
  ) {
    self.router = router
    self.limiter = limiter
    self.probeLimiter = RPCLimiter(limit: min(limiter.limit, max(16, limiter.limit / 20)))
    self.monitor = monitor
    self.authenticator = authenticator
    self.forwardsBearer = forwardsBearer
    self.maximumMessageBytes = maximumMessageBytes
    self.budget = budget
    self.bodyTimeout = bodyTimeout
    self.echoMetadata = echoMetadata
    self.logger = logger
    self.tracing = tracing
  }

  /// A call the engine let in: its method, and its hold on the limiter and the monitor until
  /// `release`.
  struct Admission {
    let method: RPCMethod
    fileprivate let ticket: RPCMonitor.Ticket
    /// Whether the call holds a slot of `limiter` (else one of `probeLimiter`).
    fileprivate let pooled: Bool
    /// The call's span, with `--otlp-endpoint`.
    fileprivate(set) var trace: CallTrace?
  }

  /// Routes a call and lets it in, or refuses it. In this order, so that a caller without a
  /// valid token learns nothing and holds nothing (no slot, no metric series, no log line of its
  /// own) beyond the health probes that need no token:
  /// - `UNAUTHENTICATED` for a request with more than one `authorization` (one would be checked,
  ///   another passed on), and, with `--require-bearer`, for one without a valid bearer token,
  ///   whatever its path (so methods cannot be enumerated), unless it is a health probe (a method
  ///   with `authenticates` false);
  /// - `UNIMPLEMENTED` for an unknown path;
  /// - `RESOURCE_EXHAUSTED` past `--max-concurrent-rpcs`. Calls let in without a token run in a
  ///   pool of their own (`probeLimiter`), so they never take the slots token holders need.
  ///
  /// `authorizations` are the request's `authorization` values. The call's log line carries the
  /// trace id of `traceParent`. A refused call is counted by transport and code only
  /// (`sluice_rpcs_refused_total`), and not logged.
  func admit(
    path: String,
    authorizations: some Collection<String>,
    traceParent: String? = nil,
    transport: GatewayMetrics.Transport
  ) -> Result<Admission, RPCError> {
    func refuse(_ error: RPCError) -> Result<Admission, RPCError> {
      self.monitor.refused(transport: transport, code: error.code)
      return .failure(error)
    }
    let refusal = self.credentialRefusal(authorizations)
    guard let method = self.router.method(path: path) else {
      return refuse(refusal ?? GRPCErrors.unknownMethod(path))
    }
    if let refusal, method.authenticates || authorizations.count > 1 { return refuse(refusal) }
    let limiter = refusal == nil ? self.limiter : self.probeLimiter
    guard limiter.acquire() else {
      return refuse(
        refusal == nil
          ? GRPCErrors.tooManyRPCs(limit: limiter.limit) : GRPCErrors.tooManyProbes(limit: limiter.limit))
    }
    let ticket = self.monitor.begin(method: method, transport: transport, traceParent: traceParent)
    return .success(Admission(method: method, ticket: ticket, pooled: refusal == nil))
  }

  /// Why a request with these `authorization` values may not call a method that needs a token
  /// (more than one, none, or not a valid bearer token); nil when it may, or when the gateway
  /// checks no tokens. A front end that refuses a request before it reaches `admit` (a path no
  /// method has) asks this first, so that without a token every path answers the same.
  func credentialRefusal(_ authorizations: some Collection<String>) -> RPCError? {
    guard authorizations.count <= 1 else { return GRPCErrors.duplicateCredentials }
    guard let authenticator = self.authenticator else { return nil }
    guard let authorization = authorizations.first else { return GRPCErrors.missingCredentials }
    return authenticator.allows(authorization: authorization) ? nil : GRPCErrors.invalidCredentials
  }

  /// A call the engine let in, with its method's handler made and the `ServerCall` it answers
  /// through.
  struct Started {
    let admission: Admission
    let handler: any RPCHandler
    let call: ServerCall
  }

  /// The start every front end shares, through `CallLifecycle`: routes and admits a call (see
  /// `admit`; the `authorization` is the request's own), then makes its handler, answering to
  /// `responder`.
  func begin(
    path: String,
    metadata: HPACKHeaders,
    deadline: NIODeadline?,
    origin: CallOrigin,
    transport: GatewayMetrics.Transport,
    responder: any CallResponder
  ) -> Result<Started, RPCError> {
    self.admit(
      path: path, authorizations: metadata["authorization"],
      traceParent: self.monitor.logsCalls ? metadata.first(name: "traceparent") : nil, transport: transport
    ).map { admission in
      var admission = admission
      var metadata = metadata
      if self.authenticator != nil, !self.forwardsBearer {
        // The token was checked here; it is not the services' or the upstreams' to see
        // (`--forward-bearer` passes it on).
        metadata.remove(name: "authorization")
      }
      admission.trace = self.tracing?.start(method: admission.method, metadata: metadata, transport: transport)
      return Started(
        admission: admission,
        handler: admission.method.makeHandler(),
        call: ServerCall(
          responder: responder, metadata: metadata, deadline: deadline, origin: origin, trace: admission.trace)
      )
    }
  }

  /// A handler's response metadata and, with `--echo-metadata`, the request's as `echo-<key>`.
  /// (The native port also echoes into the header blocks it writes without the handler's
  /// metadata: before a proxied call's first message, and trailers-only answers.)
  func responseMetadata(_ metadata: HPACKHeaders, for call: ServerCall) -> HPACKHeaders {
    var headers = metadata
    if self.echoMetadata { MetadataEcho.echo(call.metadata, into: &headers) }
    return headers
  }

  /// An admitted call ended with `code` (`ok` or the status code's name), having received and
  /// sent that many messages. Once per admission.
  func release(_ admission: Admission, code: String, received: Int, sent: Int) {
    admission.trace?.end(code: code)
    (admission.pooled ? self.limiter : self.probeLimiter).release()
    self.monitor.end(admission.ticket, code: code, received: received, sent: sent)
  }
}

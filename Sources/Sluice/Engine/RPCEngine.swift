internal import GRPCCore
internal import Logging
internal import NIOCore
internal import NIOHPACK

/// What every call shares, whichever front end it came in on (native gRPC, WebSocket, HTTP
/// JSON): routing, the concurrent-RPC limit, bearer authentication, and the metrics and log line
/// of `RPCMonitor`. A front end asks `admit` when a call starts and `release` once it has ended;
/// both run on the call's event loop and take no lock but the limiter's atomic and the monitor's
/// counts.
final class RPCEngine: Sendable {
  let router: RPCRouter
  let limiter: RPCLimiter
  let monitor: RPCMonitor
  let authenticator: BearerAuthenticator?
  let maximumMessageBytes: Int
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
    maximumMessageBytes: Int,
    echoMetadata: Bool,
    logger: Logger,
    tracing: CallTracing? = nil
  ) {
    self.router = router
    self.limiter = limiter
    self.monitor = monitor
    self.authenticator = authenticator
    self.maximumMessageBytes = maximumMessageBytes
    self.echoMetadata = echoMetadata
    self.logger = logger
    self.tracing = tracing
  }

  /// A call the engine let in: its method, and its hold on the limiter and the monitor until
  /// `release`.
  struct Admission {
    let method: RPCMethod
    fileprivate let ticket: RPCMonitor.Ticket
    /// The call's span, with `--otlp-endpoint`.
    fileprivate(set) var trace: CallTrace?
  }

  /// Routes a call and lets it in, or refuses it: `UNIMPLEMENTED` for an unknown path,
  /// `RESOURCE_EXHAUSTED` past `--max-concurrent-rpcs`, `UNAUTHENTICATED` without a valid bearer
  /// token when the method asks for one (`authorization` is the request's `authorization`
  /// metadata). The call's log line carries the trace id of `traceParent`. A refused call that
  /// was routed is counted and logged as ended here.
  func admit(
    path: String,
    authorization: String?,
    traceParent: String? = nil,
    transport: GatewayMetrics.Transport
  ) -> Result<Admission, RPCError> {
    guard let method = self.router.method(path: path) else {
      return .failure(GRPCErrors.unknownMethod(path))
    }
    let ticket = self.monitor.begin(method: method.name, transport: transport, traceParent: traceParent)
    func refuse(_ error: RPCError) -> Result<Admission, RPCError> {
      self.monitor.end(ticket, code: "\(error.code)", received: 0, sent: 0)
      return .failure(error)
    }
    guard self.limiter.acquire() else {
      return refuse(GRPCErrors.tooManyRPCs(limit: self.limiter.limit))
    }
    if let authenticator = self.authenticator, method.authenticates {
      guard let authorization else {
        self.limiter.release()
        return refuse(GRPCErrors.missingCredentials)
      }
      guard authenticator.allows(authorization: authorization) else {
        self.limiter.release()
        return refuse(GRPCErrors.invalidCredentials)
      }
    }
    return .success(Admission(method: method, ticket: ticket))
  }

  /// A call the engine let in, with its method's handler made and the `ServerCall` it answers
  /// through.
  struct Started {
    let admission: Admission
    let handler: any RPCHandler
    let call: ServerCall
  }

  /// The start every front end shares: routes and admits a call (see `admit`; the
  /// `authorization` is the request's own), then makes its handler, answering to `responder`.
  func begin(
    path: String,
    metadata: HPACKHeaders,
    deadline: NIODeadline?,
    origin: CallOrigin,
    transport: GatewayMetrics.Transport,
    responder: any CallResponder
  ) -> Result<Started, RPCError> {
    self.admit(
      path: path, authorization: metadata.first(name: "authorization"),
      traceParent: self.monitor.logsCalls ? metadata.first(name: "traceparent") : nil, transport: transport
    ).map { admission in
      var admission = admission
      admission.trace = self.tracing?.start(method: admission.method, metadata: metadata, transport: transport)
      return Started(
        admission: admission,
        handler: admission.method.makeHandler(),
        call: ServerCall(
          responder: responder, metadata: metadata, deadline: deadline, origin: origin, trace: admission.trace)
      )
    }
  }

  /// Starts a begun call's handler: returns the metadata its response begins with (see
  /// `responseMetadata`), or nil when the handler sends its headers later.
  func start(_ started: Started) -> HPACKHeaders? {
    started.handler.start(started.call).map { self.responseMetadata($0, for: started.call) }
  }

  /// A handler's response metadata and, with `--echo-metadata`, the request's as `echo-<key>`.
  /// (The native port adds the echo to every header block it writes instead, trailers-only
  /// answers included.)
  func responseMetadata(_ metadata: HPACKHeaders, for call: ServerCall) -> HPACKHeaders {
    var headers = metadata
    if self.echoMetadata { MetadataEcho.echo(call.metadata, into: &headers) }
    return headers
  }

  /// An admitted call ended with `code` (`ok` or the status code's name), having received and
  /// sent that many messages. Once per admission.
  func release(_ admission: Admission, code: String, received: Int, sent: Int) {
    admission.trace?.end(code: code)
    self.limiter.release()
    self.monitor.end(admission.ticket, code: code, received: received, sent: sent)
  }
}

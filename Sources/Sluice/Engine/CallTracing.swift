internal import Instrumentation
internal import NIOHPACK
internal import Tracing

/// `--otlp-endpoint`: one server span per RPC, whatever its transport, exported by swift-otel. A
/// call's span continues the client's trace (its `traceparent`, read with the tracer's W3C
/// propagator) and is the parent of an upstream's span (the upstream request carries the span's
/// own `traceparent`). Spans start and end on the call's event loop; the exporter batches them
/// off it.
struct CallTracing: Sendable {
  let tracer: any Tracer

  /// The span of a call of `method` that just began.
  func start(method: RPCMethod, metadata: HPACKHeaders, transport: GatewayMetrics.Transport) -> CallTrace {
    var context = InstrumentationContext.topLevel
    self.tracer.extract(metadata, into: &context, using: HeaderExtractor())
    let span = self.tracer.startSpan(method.name, context: context, ofKind: .server)
    let parts = method.name.split(separator: "/", maxSplits: 1)
    span.attributes["rpc.system"] = "grpc"
    span.attributes["rpc.service"] = String(parts.first ?? "")
    span.attributes["rpc.method"] = String(parts.last ?? "")
    span.attributes["sluice.transport"] = transport.rawValue
    return CallTrace(tracer: self.tracer, span: span)
  }
}

/// A call's span.
struct CallTrace: Sendable {
  let tracer: any Tracer
  let span: any Span

  /// Puts the span's trace context in an upstream request's headers, in place of the client's.
  func inject(into headers: inout HPACKHeaders) {
    headers.remove(name: "traceparent")
    headers.remove(name: "tracestate")
    self.tracer.inject(self.span.context, into: &headers, using: HeaderInjector())
  }

  /// Ends the span with the call's status (`ok` or the status code's name).
  func end(code: String) {
    self.span.attributes["rpc.grpc.status"] = code
    if code != "ok" { self.span.setStatus(SpanStatus(code: .error, message: code)) }
    self.span.end()
  }
}

private struct HeaderExtractor: Extractor {
  func extract(key: String, from carrier: HPACKHeaders) -> String? {
    carrier.first(name: key)
  }
}

private struct HeaderInjector: Injector {
  func inject(_ value: String, forKey key: String, into carrier: inout HPACKHeaders) {
    carrier.replaceOrAdd(name: key, value: value)
  }
}

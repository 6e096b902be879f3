"""--otlp-endpoint: a server span per RPC exported with OTLP, received by a collector we did not
write (an OTLP TraceService on grpcio, from opentelemetry-proto's stubs). Each span continues the
client's traceparent, carries the RPC's attributes and status, and is the parent of the upstream's
call (the upstream, a grpcio server, reports the traceparent it received)."""
import asyncio
import json
import threading
import time
from concurrent import futures

import grpc
import pytest
import websockets
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from conftest import Sluice
from test_upstream import SERVICE, LabServer, free_port, lab  # noqa: F401  (lab is a fixture)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT}-01"
SERVER = 2  # Span.SpanKind.SPAN_KIND_SERVER
ERROR = 2  # Status.StatusCode.STATUS_CODE_ERROR


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self):
        self.spans = []
        self.resources = []
        self.lock = threading.Lock()

    def Export(self, request, context):
        with self.lock:
            for resource_spans in request.resource_spans:
                self.resources.append(resource_spans.resource)
                for scope in resource_spans.scope_spans:
                    self.spans.extend(scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait_for(self, name, count=1, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [s for s in self.spans if s.name == name]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        with self.lock:
            raise AssertionError(f"no span {name} in {[s.name for s in self.spans]}")


def attributes(span):
    return {a.key: a.value.string_value or a.value.int_value for a in span.attributes}


@pytest.fixture(scope="module")
def collector():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    collector = Collector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    collector.endpoint = f"http://127.0.0.1:{port}"
    yield collector
    server.stop(0)


@pytest.fixture(scope="module")
def traced(lab, collector):  # noqa: F811
    upstream = LabServer(lab)
    gateway = Sluice("--otlp-endpoint", collector.endpoint, "--upstream", f"{SERVICE}={upstream.address}",
                     "--descriptor-set", str(lab.protoset))
    yield gateway
    gateway.close()
    upstream.kill()


def test_a_websocket_call_is_a_server_span_in_the_clients_trace(traced, collector):
    async def call():
        async with websockets.connect(f"{traced.ws}/hello.UserService/SayHi",
                                      additional_headers={"traceparent": TRACEPARENT}) as ws:
            await ws.send(json.dumps({"name": "span"}))
            return [json.loads(frame) async for frame in ws]

    frames = asyncio.run(asyncio.wait_for(call(), 10))
    assert frames[-1] == {"$end": {"code": 0}}, frames
    span = collector.wait_for("hello.UserService/SayHi")[0]
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT, span
    assert span.kind == SERVER and span.status.code != ERROR
    expected = {"rpc.system": "grpc", "rpc.service": "hello.UserService", "rpc.method": "SayHi",
                "sluice.transport": "websocket", "rpc.grpc.status": "ok"}
    assert attributes(span).items() >= expected.items(), attributes(span)
    assert span.end_time_unix_nano >= span.start_time_unix_nano > 0
    service_names = {a.value.string_value for r in collector.resources for a in r.attributes if a.key == "service.name"}
    assert service_names == {"sluice"}


def test_a_proxied_call_is_the_parent_of_the_upstreams(traced, collector, lab):  # noqa: F811
    with grpc.insecure_channel(traced.grpc_target) as channel:
        reply = lab.grpc.LabStub(channel).Echo(lab.pb2.Item(name="p"), metadata=(("traceparent", TRACEPARENT),), timeout=10)
    span = collector.wait_for(f"{SERVICE}/Echo")[0]
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT
    # The upstream got the same trace, with the gateway's span as its parent.
    version, trace_id, parent, flags = reply.metadata["traceparent"].split("-")
    assert (version, trace_id, parent) == ("00", TRACE_ID, span.span_id.hex()), reply.metadata["traceparent"]
    assert attributes(span)["sluice.transport"] == "grpc"


def test_a_failed_call_has_an_error_status_and_a_call_without_a_trace_starts_one(traced, collector, lab):  # noqa: F811
    with grpc.insecure_channel(traced.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as failed:
            lab.grpc.LabStub(channel).Fail(lab.pb2.FailRequest(code=9, message="no"), timeout=10)
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    span = collector.wait_for(f"{SERVICE}/Fail")[0]
    assert span.status.code == ERROR and attributes(span)["rpc.grpc.status"] != "ok", span
    assert len(span.trace_id) == 16 and span.trace_id.hex() != TRACE_ID and span.parent_span_id == b""


def test_otlp_over_http(start_sluice):
    """--otlp-protocol http: the spans arrive as protobuf POSTs on /v1/traces."""
    import http.server

    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            received.append((self.path, self.headers["Content-Type"], request))
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s = start_sluice("--otlp-endpoint", f"http://127.0.0.1:{server.server_address[1]}/v1/traces",
                         "--otlp-protocol", "http")
        import subprocess
        out = subprocess.run(["curl", "-s", "-H", f"traceparent: {TRACEPARENT}", "-d", '{"name":"h"}',
                              f"http://127.0.0.1:{s.http_port}/hello.UserService/SayHi"], capture_output=True, timeout=10)
        assert b"hi h---" in out.stdout, out
        deadline = time.monotonic() + 15
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        path, content_type, request = received[0]
        assert path == "/v1/traces" and content_type == "application/x-protobuf"
        span = request.resource_spans[0].scope_spans[0].spans[0]
        assert span.name == "hello.UserService/SayHi" and span.trace_id.hex() == TRACE_ID
        assert attributes(span)["sluice.transport"] == "http"
    finally:
        server.shutdown()

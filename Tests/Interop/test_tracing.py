"""W3C trace context through the gateway: a `traceparent`/`tracestate` header on a WebSocket
handshake or an HTTP call, a `$metadata` entry, or native metadata reaches the hosted service and
an upstream (a grpcio server that reports the metadata it received) as gRPC metadata, and the
per-RPC log line carries the trace id."""
import asyncio
import json
import subprocess
import time

import grpc
import pytest
import websockets

from conftest import Sluice
from test_upstream import SERVICE, LabServer, lab  # noqa: F401  (lab is a fixture)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


@pytest.fixture(scope="module")
def traced(lab):  # noqa: F811
    upstream = LabServer(lab)
    gateway = Sluice("--echo-metadata", "--upstream", f"{SERVICE}={upstream.address}",
                     "--descriptor-set", str(lab.protoset))
    yield gateway
    gateway.close()
    upstream.kill()


def ws_call(gateway, path, message, headers=None, first=None):
    async def run():
        async with websockets.connect(f"{gateway.ws}{path}", additional_headers=headers or {}) as ws:
            if first:
                await ws.send(json.dumps(first))
            await ws.send(json.dumps(message))
            return [json.loads(frame) async for frame in ws]

    return asyncio.run(asyncio.wait_for(run(), 10))


def logged_trace_ids(gateway, method, expected, count=1, timeout=10):
    """The trace ids of `method`'s "RPC finished" lines, once `expected` is among them `count`
    times (or 10 s have passed): a line of an earlier call must not end the wait before this
    call's line is written."""
    deadline = time.monotonic() + timeout
    while True:
        lines = gateway.log_lines("RPC finished", f"sluice.rpc.method={method}")
        ids = [line.split("sluice.rpc.trace_id=")[1].split()[0] for line in lines if "sluice.rpc.trace_id=" in line]
        if ids.count(expected) >= count or time.monotonic() > deadline:
            return ids
        time.sleep(0.02)


def test_websocket_handshake_headers_reach_the_service_and_the_upstream(traced):
    headers = {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    frames = ws_call(traced, "/hello.UserService/SayHi", {"name": "t"}, headers=headers)
    assert frames[0]["$headers"]["echo-traceparent"] == [TRACEPARENT], frames
    assert frames[0]["$headers"]["echo-tracestate"] == [TRACESTATE], frames
    frames = ws_call(traced, f"/{SERVICE}/Echo", {"name": "t"}, headers=headers)
    reply = next(f for f in frames if "item" in f)
    assert reply["metadata"]["traceparent"] == TRACEPARENT and reply["metadata"]["tracestate"] == TRACESTATE
    assert TRACE_ID in logged_trace_ids(traced, f"{SERVICE}/Echo", TRACE_ID)


def test_a_metadata_frame_carries_it_too(traced):
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    frames = ws_call(traced, f"/{SERVICE}/Echo", {"name": "m"}, first={"$metadata": {"traceparent": other}})
    reply = next(f for f in frames if "item" in f)
    assert reply["metadata"]["traceparent"] == other, frames
    other_id = "0af7651916cd43dd8448eb211c80319c"
    assert other_id in logged_trace_ids(traced, f"{SERVICE}/Echo", other_id)


def test_http_json_headers_reach_the_service_and_the_upstream(traced):
    base = f"http://127.0.0.1:{traced.http_port}"
    out = subprocess.run(
        ["curl", "-s", "-D", "-", "-H", f"traceparent: {TRACEPARENT}", "-H", f"tracestate: {TRACESTATE}",
         "-d", '{"name":"h"}', f"{base}/hello.UserService/SayHi"],
        capture_output=True, timeout=10,
    )
    assert f"grpc-metadata-echo-traceparent: {TRACEPARENT}".lower() in out.stdout.decode().lower(), out.stdout
    out = subprocess.run(
        ["curl", "-s", "-H", f"traceparent: {TRACEPARENT}", "-d", '{"name":"h"}', f"{base}/{SERVICE}/Echo"],
        capture_output=True, timeout=10,
    )
    assert json.loads(out.stdout)["metadata"]["traceparent"] == TRACEPARENT, out
    # The WebSocket SayHi of the first test logged TRACE_ID too: this call makes it twice.
    assert logged_trace_ids(traced, "hello.UserService/SayHi", TRACE_ID, count=2).count(TRACE_ID) >= 1


def test_native_metadata_goes_upstream_and_into_the_log(traced, lab):  # noqa: F811
    with grpc.insecure_channel(traced.grpc_target) as channel:
        reply = lab.grpc.LabStub(channel).Echo(lab.pb2.Item(name="n"), metadata=(("traceparent", TRACEPARENT),), timeout=10)
    assert reply.metadata["traceparent"] == TRACEPARENT
    assert logged_trace_ids(traced, f"{SERVICE}/Echo", TRACE_ID, count=2).count(TRACE_ID) >= 2


def test_a_malformed_traceparent_is_passed_on_but_not_logged_as_a_trace(traced):
    bad = "00-not-a-trace-01"
    frames = ws_call(traced, "/hello.UserService/SayHi", {"name": "b"}, headers={"traceparent": bad})
    assert frames[0]["$headers"]["echo-traceparent"] == [bad], frames
    ids = logged_trace_ids(traced, "hello.UserService/SayHi", "-")
    assert "-" in ids and "not" not in " ".join(ids)

"""Pipelined streams through the proxy (issue 30): a client that sends every message while it reads
the answers, the way a default grpc-go client's Route does, through Sluice in front of the
benchmarks' grpc-go server. Before the fix a million-message Route hung after 20,000-50,000
messages: the proxy held the client's requests while grpc-go waited for the proxy to take its
responses, and the stream counted queued requests against its own writability, so neither side
moved. The same runs against Sluice's hosted services and over TLS, then grpcio, WebSocket/JSON and
HTTP NDJSON front ends, pipelined the same way."""
import asyncio
import json
import socket
import subprocess
import threading
import time

import grpc
import pytest
import websockets

from conftest import ROOT, make_pki
from test_upstream import free_port, grpc_go  # noqa: F401  (fixture)

LOADGEN = ROOT / ".build-bench" / "bin" / "loadgen"
MILLION = 1_000_000


def metric(port, name, **labels):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def loadgen(scenario, target, n=MILLION, *extra):
    """One counted run of the grpc-go load generator with grpc-go's default client (dynamic
    windows, BDP pings); window 0: every message sent while the answers are read."""
    assert LOADGEN.exists(), "the grpc-go load generator is missing: run scripts/build-go-peers.sh"
    out = subprocess.run(
        [str(LOADGEN), "run", "--scenario", scenario, "--runs", "1", "--n", str(n), "--window", "0",
         "--grpc-window", "0", "--target", f"name=sluice,grpc={target}", *extra],
        capture_output=True, text=True, timeout=300)
    # The load generator fails on any error, a missing or out-of-order response, or its 5-minute
    # context running out (what a hang became).
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)["targets"][0]["runs"][-1]


def check_calls(s, method, transport="grpc", at_least=2):
    ok = metric(s.http_port, "sluice_rpcs_total", method=method, transport=transport, code="ok")
    calls = metric(s.http_port, "sluice_rpcs_total", method=method, transport=transport)
    assert ok == calls >= at_least, (method, ok, calls)


@pytest.mark.parametrize("mode", ["proxy", "hosted", "proxy-tls"])
def test_a_default_grpc_go_client_pipelines_a_million_messages(mode, grpc_go, start_sluice, tmp_path):  # noqa: F811
    flags, extra = [], []
    if mode != "hosted":
        flags = ["--hosted", "none", "--upstream", f"*={grpc_go}"]
    if mode == "proxy-tls":
        pki = make_pki(tmp_path)
        flags += ["--tls-cert", str(pki["chain"]), "--tls-key", str(pki["key"])]
        extra = ["--grpc-ca", str(pki["ca"])]
    s = start_sluice(*flags)
    target = f"127.0.0.1:{s.grpc_port}" if mode != "proxy-tls" else f"localhost:{s.grpc_port}"
    route = loadgen("grpc-route", target, MILLION, *extra)
    record = loadgen("grpc-record", target, MILLION, *extra)
    assert route["msg_per_s"] > 0 and record["msg_per_s"] > 0
    if mode != "proxy-tls":  # /metrics is plain HTTP; with TLS the HTTP port is https
        # The warm-up run and the counted one of each, every call OK.
        check_calls(s, "proto.StreamService/Route")
        check_calls(s, "proto.StreamService/Record")


def test_grpcio_pipelines_route_and_record_through_the_proxy(grpc_go, start_sluice, stubs):  # noqa: F811
    s = start_sluice("--hosted", "none", "--upstream", f"*={grpc_go}")
    n = 200_000
    pb = stubs.stream_pb2
    requests = [pb.StreamRequest(pt=pb.StreamPoint(name="p", value=i)) for i in range(n)]
    with grpc.insecure_channel(s.grpc_target) as channel:
        streams = stubs.stream_pb2_grpc.StreamServiceStub(channel)
        # grpcio sends from its own thread as fast as flow control allows while this one reads.
        count = 0
        for reply in streams.Route(iter(requests), timeout=300):
            assert reply.pt.value == count
            count += 1
        assert count == n
        assert streams.Record(iter(requests), timeout=300).pt.name == "gRPC Stream Server: Record"
    check_calls(s, "proto.StreamService/Route", at_least=1)
    check_calls(s, "proto.StreamService/Record", at_least=1)


def test_a_websocket_client_pipelines_route_through_the_proxy(grpc_go, start_sluice):  # noqa: F811
    from conftest import ROOT as root

    s = start_sluice("--hosted", "none", "--upstream", f"*={grpc_go}", "--descriptor-set",
                     str(root / "Protos" / "sluice.binpb"))
    n = 100_000

    async def go():
        async with websockets.connect(f"{s.ws}/proto.StreamService/Route", max_size=None) as ws:
            async def send():
                for i in range(n):
                    await ws.send(json.dumps({"pt": {"name": "w", "value": i}}))
                await ws.send(json.dumps({"$end": True}))

            sender = asyncio.create_task(send())
            values, end = [], None
            async for frame in ws:
                message = json.loads(frame)
                if "$end" in message:
                    end = message["$end"]
                    break
                if "pt" in message:
                    values.append(message["pt"].get("value", 0))
            await sender
            return values, end

    values, end = asyncio.run(asyncio.wait_for(go(), 300))
    assert end == {"code": 0} or end.get("code") == 0, end
    assert values == list(range(n)), (len(values), values[:3], values[-3:])


def test_an_http_ndjson_client_pipelines_route_through_the_proxy(grpc_go, start_sluice):  # noqa: F811
    s = start_sluice("--hosted", "none", "--upstream", f"*={grpc_go}", "--descriptor-set",
                     str(ROOT / "Protos" / "sluice.binpb"))
    n = 100_000
    sock = socket.create_connection(("127.0.0.1", s.http_port), timeout=60)
    sock.sendall(b"POST /proto.StreamService/Route HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/x-ndjson\r\nAccept: application/x-ndjson\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")

    def send():
        # Every line written at once, in chunks, while the main thread reads the answers.
        batch = []
        for i in range(n):
            batch.append(json.dumps({"pt": {"name": "h", "value": i}}) + "\n")
            if len(batch) == 500 or i == n - 1:
                data = "".join(batch).encode()
                sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                batch = []
        sock.sendall(b"0\r\n\r\n")

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = bytearray()
    deadline = time.monotonic() + 300
    while b'"$end"' not in received[-200:] and time.monotonic() < deadline:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        received += chunk
    sock.close()
    sender.join(10)
    head, _, chunked = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    body = dechunk(chunked)
    values = []
    end = None
    for line in body.splitlines():
        message = json.loads(line)
        if "$end" in message:
            end = message["$end"]
        elif "pt" in message:
            values.append(message["pt"].get("value", 0))
    assert end is not None and end.get("code") == 0, (end, body[-300:])
    assert values == list(range(n)), (len(values), values[:3], values[-3:])


def dechunk(data):
    """An HTTP/1.1 chunked body's content."""
    out, rest = bytearray(), data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2:]
    return bytes(out)

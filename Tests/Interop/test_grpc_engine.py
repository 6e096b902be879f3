"""The native port on Sluice's own engine (swift-nio-http2 used directly), checked point by point
against gRPC's PROTOCOL-HTTP2 with clients we did not write: grpcio, the h2 library, nghttp2's
h2load, and grpc-go (the benchmarks' load generator, with grpc-go's default dynamic windows)."""
import asyncio
import gzip
import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from test_security import h2_connect, h2_events

ROOT = Path(__file__).resolve().parents[2]
SAY_HI = "/hello.UserService/SayHi"


def framed(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def say_hi_bytes(stubs, name):
    return stubs.hello_pb2.Request(name=name).SerializeToString()


def exchange(port, headers, body=None, end=True, timeout=10):
    """One request on a fresh HTTP/2 connection: the response headers, data and trailers."""
    sock, conn = h2_connect(port)
    with sock:
        conn.send_headers(1, headers, end_stream=body is None and end)
        if body is not None:
            conn.send_data(1, body, end_stream=end)
        sock.sendall(conn.data_to_send())
        events = h2_events(sock, conn, lambda seen: any(
            isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated)) for e in seen),
            timeout=timeout)
    answer = {"headers": {}, "data": b"", "trailers": {}, "reset": None}
    for e in events:
        if isinstance(e, h2.events.ResponseReceived):
            answer["headers"] = {k.decode(): v.decode() for k, v in e.headers}
        elif isinstance(e, h2.events.TrailersReceived):
            answer["trailers"] = {k.decode(): v.decode() for k, v in e.headers}
        elif isinstance(e, h2.events.DataReceived):
            answer["data"] += e.data
        elif isinstance(e, h2.events.StreamReset):
            answer["reset"] = e.error_code
    return answer


def request_headers(path=SAY_HI, **extra):
    headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
               ("content-type", "application/grpc"), ("te", "trailers")]
    for name, value in extra.items():
        name = name.replace("_", "-")
        headers = [(k, v) for k, v in headers if k != name] + [(name, value)]
    return headers


def status(answer):
    """grpc-status and grpc-message, from the trailers or a trailers-only response."""
    where = answer["trailers"] or answer["headers"]
    return where.get("grpc-status"), where.get("grpc-message")


# --- request headers -------------------------------------------------------------------------------


@pytest.mark.parametrize("change, http_status, code", [
    ({":method": "GET"}, "405", "13"),
    ({"content-type": "text/plain"}, "415", "3"),
    ({"content-type": "application/json"}, "415", "3"),
])
def test_requests_that_are_not_grpc_get_the_http_status_the_spec_names(sluice, stubs, change, http_status, code):
    headers = [(k, change.get(k, v)) for k, v in request_headers()]
    answer = exchange(sluice.grpc_port, headers, framed(say_hi_bytes(stubs, "a")))
    assert answer["headers"].get(":status") == http_status, answer
    assert status(answer)[0] == code, answer


def test_grpc_plus_proto_and_a_missing_te_are_served(sluice, stubs):
    headers = [(k, v) for k, v in request_headers(content_type="application/grpc+proto") if k != "te"]
    answer = exchange(sluice.grpc_port, headers, framed(say_hi_bytes(stubs, "plus")))
    assert status(answer) == ("0", None), answer
    assert answer["headers"].get("content-type") == "application/grpc"
    reply = stubs.hello_pb2.Response.FromString(answer["data"][5:])
    assert reply.result.startswith("hi plus---")


def test_an_unknown_encoding_is_unimplemented_with_the_encodings_accepted(sluice, stubs):
    answer = exchange(sluice.grpc_port, request_headers(grpc_encoding="snappy"), framed(say_hi_bytes(stubs, "a")))
    assert status(answer)[0] == "12", answer
    assert answer["headers"].get("grpc-accept-encoding") == "identity,gzip", answer


def test_a_compressed_flag_without_an_encoding_is_internal(sluice, stubs):
    body = b"\x01" + framed(say_hi_bytes(stubs, "a"))[1:]
    assert status(exchange(sluice.grpc_port, request_headers(), body))[0] == "13"


def test_grpcio_sends_gzip_messages_on_every_kind_of_call(sluice, stubs):
    with grpc.insecure_channel(sluice.grpc_target, compression=grpc.Compression.Gzip) as channel:
        reply = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="zip" * 100), timeout=10)
        assert reply.result.startswith("hi " + "zip" * 100 + "---")
        stream = stubs.stream_pb2_grpc.StreamServiceStub(channel)
        points = [stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(name="z", value=i)) for i in range(50)]
        assert [r.pt.value for r in stream.Route(iter(points), timeout=10)] == list(range(50))
        assert stream.Record(iter(points), timeout=10).pt.value == 1


def gzip_frame(payload: bytes) -> bytes:
    data = gzip.compress(payload)
    return b"\x01" + len(data).to_bytes(4, "big") + data


def test_gzip_that_does_not_inflate_is_internal_and_a_bomb_is_resource_exhausted(start_sluice, stubs):
    s = start_sluice("--max-message-bytes", "100000")
    good = gzip_frame(say_hi_bytes(stubs, "g"))
    answer = exchange(s.grpc_port, request_headers(grpc_encoding="gzip"), good)
    assert status(answer)[0] == "0", answer
    stream = gzip.compress(say_hi_bytes(stubs, "g"))
    # Cut short anywhere (its header only, mid-data, without its CRC and length), followed by
    # more bytes, or not gzip at all: INTERNAL, never a shorter message passed on.
    for bad in [stream[:10], stream[:len(stream) // 2], stream[:-8], stream + b"x", stream + stream, b"nope!"]:
        frame = b"\x01" + len(bad).to_bytes(4, "big") + bad
        answer = exchange(s.grpc_port, request_headers(grpc_encoding="gzip"), frame)
        assert status(answer)[0] == "13" and "gzip" in status(answer)[1], (bad, answer)
    # 10 MB of zeros gzip to about 10 kB: refused past the 100,000-byte limit, not inflated.
    bomb = gzip_frame(b"\x0a\x80\xad\xe2\x04" + bytes(10_000_000))
    assert len(bomb) < 100_000
    answer = exchange(s.grpc_port, request_headers(grpc_encoding="gzip"), bomb)
    assert status(answer)[0] == "8", answer
    with grpc.insecure_channel(s.grpc_target) as channel:  # the gateway is fine
        assert stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="ok"), timeout=10)


def test_unknown_services_and_methods_are_unimplemented_trailers_only(sluice):
    for path in ["/proto.StreamService/Nope", "/no.Such/Service", "/"]:
        answer = exchange(sluice.grpc_port, request_headers(path=path), framed(b""))
        assert status(answer)[0] == "12", (path, answer)
        assert not answer["trailers"] and not answer["data"], "not trailers-only"


def test_an_invalid_message_is_invalid_argument(sluice):
    answer = exchange(sluice.grpc_port, request_headers(), framed(b"\xff\xff\xff"))
    assert status(answer)[0] == "3", answer


# --- messages and limits -------------------------------------------------------------------------


def test_messages_over_the_limit_are_resource_exhausted_both_ways(start_sluice, stubs):
    s = start_sluice("--max-message-bytes", "200")
    with grpc.insecure_channel(s.grpc_target) as channel:
        say_hi = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi
        with pytest.raises(grpc.RpcError) as request_error:
            say_hi(stubs.hello_pb2.Request(name="x" * 300), timeout=10)
        assert request_error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "request message of" in request_error.value.details()
        # A request that fits, whose answer ("hi <name>---<time>") does not.
        with pytest.raises(grpc.RpcError) as response_error:
            say_hi(stubs.hello_pb2.Request(name="y" * 190), timeout=10)
        assert response_error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "response message of" in response_error.value.details()
        assert say_hi(stubs.hello_pb2.Request(name="fits"), timeout=10).result.startswith("hi fits")


def test_binary_and_text_metadata_reach_the_service(start_sluice, stubs):
    s = start_sluice("--echo-metadata")
    with grpc.insecure_channel(s.grpc_target) as channel:
        _, call = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi.with_call(
            stubs.hello_pb2.Request(name="m"), timeout=10,
            metadata=[("x-text", "v1"), ("x-blob-bin", b"\x00\xff\x10")])
    echoed = dict(call.initial_metadata())
    assert echoed.get("echo-x-text") == "v1"
    assert echoed.get("echo-x-blob-bin") == b"\x00\xff\x10"


def test_grpc_message_is_percent_encoded_and_decoded_by_grpcio(sluice):
    # An unknown method whose name holds a '%': the message names the path, so its '%' travels
    # percent-encoded ("%25") and grpcio decodes it back.
    with grpc.insecure_channel(sluice.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as e:
            channel.unary_unary("/proto.StreamService/Nope%21")(b"", timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert e.value.details() == "unknown method /proto.StreamService/Nope%21"


# --- deadlines and cancellation ------------------------------------------------------------------


def test_the_server_enforces_the_deadline(start_sluice):
    """Record waits for a half-close that never comes; the server itself ends it at grpc-timeout
    (the h2 client enforces nothing)."""
    s = start_sluice()
    started = time.monotonic()
    answer = exchange(s.grpc_port, request_headers(path="/proto.StreamService/Record", grpc_timeout="300m"),
                      framed(b""), end=False, timeout=20)
    assert status(answer)[0] == "4", answer
    assert time.monotonic() - started < 15
    assert s.wait_for_log("RPC finished", "proto.StreamService/Record", "sluice.rpc.code=deadlineExceeded")


def test_a_reset_stream_stops_its_handler_at_once(start_sluice):
    s = start_sluice("--list-count", "1000000000", "--pace-ms", "1")
    sock, conn = h2_connect(s.grpc_port)
    with sock:
        conn.send_headers(1, request_headers(path="/proto.StreamService/List"))
        conn.send_data(1, framed(b""), end_stream=True)
        sock.sendall(conn.data_to_send())
        h2_events(sock, conn, lambda seen: sum(isinstance(e, h2.events.DataReceived) for e in seen) >= 3)
        conn.reset_stream(1)
        sock.sendall(conn.data_to_send())
        lines = s.wait_for_log("RPC finished", "proto.StreamService/List")
    assert lines and "sluice.rpc.code=cancelled" in lines[0], lines


# --- load from other clients ---------------------------------------------------------------------


def metric(port, name, **labels):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        body = b""
        while chunk := sock.recv(65536):
            body += chunk
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_h2load_100000_unary_calls_over_10_connections_of_100_streams(start_sluice, stubs, tmp_path):
    assert shutil.which("h2load"), "h2load is missing: scripts/test.sh installs nghttp2-client"
    s = start_sluice()
    body = tmp_path / "say-hi.bin"
    body.write_bytes(framed(say_hi_bytes(stubs, "h2load")))
    out = subprocess.run(
        ["h2load", "-n", "100000", "-c", "10", "-m", "100", "-d", str(body),
         "-H", "content-type: application/grpc", "-H", "te: trailers", f"http://127.0.0.1:{s.grpc_port}{SAY_HI}"],
        capture_output=True, text=True, timeout=300)
    assert re.search(r"100000 succeeded, 0 failed, 0 errored", out.stdout), out.stdout + out.stderr
    # h2load counts any HTTP 200 as success: every grpc-status must have been 0.
    ok = metric(s.http_port, "sluice_rpcs_total", method="hello.UserService/SayHi", transport="grpc", code="ok")
    everything = metric(s.http_port, "sluice_rpcs_total", method="hello.UserService/SayHi", transport="grpc")
    assert ok == everything == 100000, (ok, everything)


LOADGEN = ROOT / ".build-bench" / "bin" / "loadgen"


def test_a_grpc_go_client_with_default_windows_completes_a_million_message_route(start_sluice):
    """grpc-go's default (dynamic) windows send a PING with most reads while they grow (BDP
    probing); swift-nio-http2's default PING limit closed such clients with ENHANCE_YOUR_CALM."""
    assert LOADGEN.exists(), "the grpc-go load generator is missing: run scripts/build-go-peers.sh"
    s = start_sluice()
    out = subprocess.run(
        [str(LOADGEN), "run", "--scenario", "grpc-route", "--runs", "1", "--n", "1000000", "--window", "64",
         "--grpc-window", "0", "--target", f"name=sluice,grpc=127.0.0.1:{s.grpc_port}"],
        capture_output=True, text=True, timeout=600)
    # The load generator fails the run on any error (a GOAWAY ends the stream with UNAVAILABLE)
    # and on a missing or out-of-order response.
    assert out.returncode == 0, out.stdout + out.stderr
    run = json.loads(out.stdout)["targets"][0]["runs"][0]
    assert run["msg_per_s"] > 0, run
    # Its warm-up run and the counted one, every message answered, every call OK.
    ok = metric(s.http_port, "sluice_rpcs_total", method="proto.StreamService/Route", transport="grpc", code="ok")
    calls = metric(s.http_port, "sluice_rpcs_total", method="proto.StreamService/Route", transport="grpc")
    assert ok == calls >= 1, (ok, calls)
    received = metric(s.http_port, "sluice_messages_total", transport="grpc", direction="in")
    sent = metric(s.http_port, "sluice_messages_total", transport="grpc", direction="out")
    assert sent == received >= 1_000_000, (received, sent)


# --- connections that end in protocol errors ---------------------------------------------------


async def _protocol_error_connection(port, say_hi):
    """A connection with a call open that breaks HTTP/2 (a DATA frame on stream 0): the server
    answers GOAWAY PROTOCOL_ERROR and closes."""
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, request_headers())
    conn.send_data(1, framed(say_hi))  # the call is open: no end of stream
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(conn.data_to_send() + b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
    try:
        while await asyncio.wait_for(reader.read(65536), 10):
            pass
    finally:
        writer.close()


def test_connections_ending_in_protocol_errors_leave_no_memory_behind(start_sluice, stubs):
    """grpc-swift-nio-transport kept about 28 kB of every such connection (the leak noted in the
    security review); the engine must give everything back."""
    s = start_sluice()
    say_hi = say_hi_bytes(stubs, "leak")

    async def rounds(count, concurrency=100):
        gate = asyncio.Semaphore(concurrency)

        async def one():
            async with gate:
                await _protocol_error_connection(s.grpc_port, say_hi)
        await asyncio.gather(*(one() for _ in range(count)))

    asyncio.run(rounds(500))  # warm up: allocator pools, NIO's buffers
    before = s.rss_kib()
    asyncio.run(rounds(4000))
    time.sleep(1)
    grown = s.rss_kib() - before
    print(f"\n  4,000 protocol-error connections: RSS {before} -> {before + grown} KiB")
    # The old leak would be about 110 MB here.
    assert grown < 20_000, f"RSS grew {grown} KiB over 4,000 connections"
    with grpc.insecure_channel(s.grpc_target) as channel:
        assert stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="ok"), timeout=10)


def test_a_long_lived_connection_does_not_grow_with_its_calls(sluice, stubs):
    # Every call is a new HTTP/2 stream on one grpcio connection. nghttp2 used to keep every
    # closed stream in its priority tree (SETTINGS_MAX_CONCURRENT_STREAMS is unlimited): about
    # 250 bytes per call, 5 MB over these 20,000.
    with grpc.insecure_channel(sluice.grpc_target) as channel:
        say_hi = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi
        for _ in range(5000):
            say_hi(stubs.hello_pb2.Request(name="warm"), timeout=10)
        before = sluice.rss_kib()
        for _ in range(20000):
            say_hi(stubs.hello_pb2.Request(name="a"), timeout=10)
        after = sluice.rss_kib()
    assert after - before < 1536, f"RSS grew by {after - before} KiB over 20,000 calls on one connection"

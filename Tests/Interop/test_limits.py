"""Limits (issue 8): each a flag with a clear error when hit, leaving everything else working."""
import asyncio
import json
import socket
import subprocess
import time

import pytest
import websockets

import sluice_fuzz as fz


def http(port, raw, timeout=10):
    """Sends raw bytes on a new connection; returns everything the server sent before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def post(path, body, extra=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


def status_and_json(response):
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body) if body else None


def closed_within(sock, seconds):
    """Whether the server closes `sock` (EOF or reset) within `seconds`, and what it sent first."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
        return True, received
    except ConnectionResetError:
        return True, received
    except socket.timeout:
        return False, received


def test_max_connections_refuses_new_ones_and_keeps_the_open_ones(start_sluice):
    s = start_sluice("--max-connections", "2")
    held = [socket.create_connection(("127.0.0.1", s.http_port)) for _ in range(2)]
    # Connections are admitted on their event loops, which may take them in another order than
    # they connected: give the two held ones time to be counted before the third arrives.
    time.sleep(0.3)
    try:
        status, error = status_and_json(http(s.http_port, post("/hello.UserService/SayHi", b'{"name":"a"}')))
        assert status == 503 and error["code"] == 8 and "--max-connections" in error["message"]
        # The connections that were in still work.
        held[0].sendall(post("/hello.UserService/SayHi", b'{"name":"a"}'))
        ok, answer = closed_within(held[0], 10)
        assert ok and status_and_json(answer)[0] == 200
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the freed slots are reused
        if status_and_json(http(s.http_port, post("/hello.UserService/SayHi", b'{"name":"a"}')))[0] == 200:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("no connection admitted after the held ones closed")


def test_max_connections_applies_to_the_grpc_port_too(start_sluice, stubs):
    import grpc
    s = start_sluice("--max-connections", "2")

    def channel():
        # A local subchannel pool: each channel its own TCP connection.
        return grpc.insecure_channel(s.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)])

    def say_hi(ch, name):
        stub = stubs.hello_pb2_grpc.UserServiceStub(ch)
        return stub.SayHi(stubs.hello_pb2.Request(name=name), timeout=5)

    def grpc_connections():
        status, body = fz.http_get(s.http_port, "/metrics")
        assert status == 200, status
        lines = [l for l in body.decode().splitlines() if l.startswith("sluice_connections_open") and 'transport="grpc"' in l]
        return int(float(lines[0].rsplit(" ", 1)[1])) if lines else 0

    held = [channel(), channel()]
    try:
        for i, ch in enumerate(held):
            assert say_hi(ch, f"held{i}").result.startswith(f"hi held{i}")
        assert grpc_connections() == 2
        third = channel()
        try:
            with pytest.raises(grpc.RpcError) as refused:
                say_hi(third, "third")
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
        finally:
            third.close()
        # The connections that were in still work.
        assert say_hi(held[0], "again").result.startswith("hi again")
    finally:
        held[1].close()
    deadline = time.monotonic() + 10
    while grpc_connections() != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert grpc_connections() == 1
    fresh = channel()  # the freed slot is reused
    try:
        assert say_hi(fresh, "fresh").result.startswith("hi fresh")
    finally:
        fresh.close()
        held[0].close()


def test_max_concurrent_rpcs_refuses_new_rpcs_on_every_transport(start_sluice):
    s = start_sluice("--max-concurrent-rpcs", "2", "--pace-ms", "60000")

    async def scenario():
        url = f"{s.ws}/proto.StreamService/List"
        running = [await websockets.connect(url) for _ in range(2)]
        for ws in running:
            await ws.send('{"pt":{"value":1}}')
            assert json.loads(await ws.recv())["pt"]["value"] == 1  # both are running
        async with websockets.connect(url) as third:
            await third.send('{"pt":{"value":1}}')
            end = json.loads(await third.recv())["$end"]
        status, error = status_and_json(http(s.http_port, post("/hello.UserService/SayHi", b'{"name":"a"}')))
        for ws in running:  # a Close alone would be a half-close: the List would go on
            await ws.send('{"$cancel":true}')
            await ws.close()
        return end, status, error

    end, status, error = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert end["code"] == 8 and "--max-concurrent-rpcs" in end["message"]
    assert status == 429 and error["code"] == 8
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if status_and_json(http(s.http_port, post("/hello.UserService/SayHi", b'{"name":"a"}')))[0] == 200:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("RPCs still refused after the running ones ended")


def test_a_trickled_handshake_is_dropped_after_the_handshake_timeout(start_sluice):
    s = start_sluice("--handshake-timeout", "0.5")
    with socket.create_connection(("127.0.0.1", s.http_port)) as sock:
        sock.sendall(b"GET /proto.StreamService/List HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        closed, received = closed_within(sock, 10)
    assert closed and received == b""
    # Others are served meanwhile and after.
    assert status_and_json(http(s.http_port, post("/hello.UserService/SayHi", b'{"name":"a"}')))[0] == 200


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(start_sluice):
    s = start_sluice("--idle-timeout", "0.5")
    with socket.create_connection(("127.0.0.1", s.http_port)) as sock:
        body = b'{"name":"a"}'
        sock.sendall(b"POST /hello.UserService/SayHi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        closed, received = closed_within(sock, 10)
    assert closed and received.startswith(b"HTTP/1.1 200")


def test_oversized_request_head_is_refused(start_sluice):
    s = start_sluice("--max-header-bytes", "1024")
    response = http(s.http_port, post("/hello.UserService/SayHi", b'{"name":"a"}', b"X-Big: " + b"a" * 4096 + b"\r\n"))
    status, error = status_and_json(response)
    assert status == 431 and error["code"] == 8 and "--max-header-bytes" in error["message"]
    assert status_and_json(http(s.http_port, post("/hello.UserService/SayHi", b'{"name":"a"}')))[0] == 200


def test_json_nested_past_the_depth_limit_is_invalid_argument(start_sluice):
    s = start_sluice("--max-json-depth", "8")
    deep = b'{"name":"a","x":' + b"[" * 20 + b"]" * 20 + b"}"
    status, error = status_and_json(http(s.http_port, post("/hello.UserService/SayHi", deep)))
    assert status == 400 and error["code"] == 3 and "nesting exceeds the limit of 8" in error["message"]


def stalled_reader(port, request):
    """Sends `request` on a socket with a small receive buffer, reads the first bytes of the
    answer, then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    assert sock.recv(64), "no answer"
    return sock


def test_send_timeout_drops_clients_that_stop_reading(start_sluice):
    # Keepalive off: only --send-timeout can notice the stalled WebSocket reader.
    s = start_sluice("--send-timeout", "1", "--ws-ping-interval", "0", "--list-count", "100000000",
                     "--log-level", "debug")
    list_body = b'{"pt":{"name":"stall","value":0}}'
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    ws = stalled_reader(s.http_port, (
        f"GET /proto.StreamService/List HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        + bytes([0x81, 0x80 | len(list_body), 0, 0, 0, 0]) + list_body)
    http_ = stalled_reader(s.http_port, post("/proto.StreamService/List", list_body))
    try:
        for transport in ("websocket", "http"):
            finished = s.wait_for_log("RPC finished", "proto.StreamService/List",
                                      f"sluice.rpc.transport={transport}", timeout=20)
            assert finished, f"the stalled {transport} List kept running"
            assert "sluice.rpc.code=cancelled" in finished[0], finished[0]
    finally:
        ws.close()
        http_.close()


def test_send_timeout_spares_slow_readers(start_sluice):
    """--send-timeout is about no progress, not total time: a reader limited to 20 kB/s gets a
    List of ~90 kB (over 4 s) whole with a 1 s send timeout."""
    s = start_sluice("--send-timeout", "1", "--list-count", "2000")
    out = subprocess.run(["curl", "-sS", "--limit-rate", "20k", "-d", '{"pt":{"name":"slow","value":0}}',
                          f"http://127.0.0.1:{s.http_port}/proto.StreamService/List"],
                         capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 2001 and lines[-1] == {"$end": {"code": 0}}, (len(lines), lines[-2:], out.stderr)
    assert lines[-2]["pt"]["value"] == 1999

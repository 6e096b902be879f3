"""The security review's findings (issue 13), each through a real socket with a client we did not
write: curl, openssl, websockets, grpcio, h2 (a Python HTTP/2 library) or a raw socket."""
import asyncio
import json
import socket
import ssl
import subprocess
import time

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest
import trustme
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

import sluice_fuzz as fz

SAY_HI = b"\x00\x00\x00\x00\x03\x0a\x01\x61"  # a gRPC frame holding hello.Request{name: "a"}


def grpc_curl(port, path, *headers, data=SAY_HI):
    """One gRPC call with curl over h2c; returns curl's verbose output (response headers).

    `--max-time`: when the answer (a trailers-only refusal) ends before curl 7.88 has sent its
    body, which happens on a loaded machine, curl sends the body and then waits for ever although
    the stream is closed; its verbose output already holds the whole answer by then."""
    args = ["curl", "-sS", "-v", "--max-time", "5", "--http2-prior-knowledge", "-H", "content-type: application/grpc",
            "-H", "te: trailers"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run([*args, "--data-binary", "@-", f"http://127.0.0.1:{port}{path}"],
                         input=data, capture_output=True, timeout=30)
    return out.stderr.decode(errors="replace")


def response_header(verbose, name):
    for line in verbose.splitlines():
        if line.lower().startswith(f"< {name}:"):
            return line.split(":", 1)[1].strip()
    return None


def raw(port, data, timeout=10):
    """Sends `data` on a new connection; returns what the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
        return b"".join(chunks)


def status_of(response):
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None


def ws_session(url, frames, headers=None, read_timeout=20):
    """A websockets session: sends `frames`, reads until Close; returns (frames, close code)."""
    async def go():
        async with websockets.connect(url, additional_headers=headers or {}, max_size=None) as ws:
            try:
                for f in frames:
                    await ws.send(json.dumps(f))
            except ConnectionClosed:
                pass  # the server may end a session it refuses before we are done sending
            received = []
            try:
                async for m in ws:
                    received.append(json.loads(m))
            except ConnectionClosed:
                pass
        return received, ws.close_code
    return asyncio.run(asyncio.wait_for(go(), read_timeout))


# --- 1. a malformed grpc-timeout crashed the native port ----------------------------------------


@pytest.mark.parametrize("timeout", ["-1S", "-000001n", "-9999999H", "1.5S", "5s", "+5S", "5 S", "123456789S", "S"])
def test_a_malformed_grpc_timeout_ends_its_stream_not_the_process(start_sluice, stubs, timeout):
    s = start_sluice()
    verbose = grpc_curl(s.grpc_port, "/hello.UserService/SayHi", f"grpc-timeout: {timeout}")
    assert response_header(verbose, "grpc-status") == "3", verbose
    assert "invalid grpc-timeout" in (response_header(verbose, "grpc-message") or ""), verbose
    time.sleep(0.2)
    assert s.process.poll() is None, "the gateway died"
    with grpc.insecure_channel(s.grpc_target) as channel:  # everyone else is still served
        reply = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="b"), timeout=10)
    assert reply.result.startswith("hi b---")


def test_valid_grpc_timeouts_in_every_unit_still_work(start_sluice):
    s = start_sluice()
    for timeout in ["1H", "1M", "30S", "5000m", "5000000u", "99999999n", "99999999H"]:
        verbose = grpc_curl(s.grpc_port, "/hello.UserService/SayHi", f"grpc-timeout: {timeout}")
        assert response_header(verbose, "grpc-status") == "0", (timeout, verbose)


def test_a_request_that_ends_with_its_headers_is_answered(start_sluice):
    """HEADERS with END_STREAM and no DATA (`curl -X POST` without a body): grpc-swift left such
    a stream unanswered for ever."""
    s = start_sluice()
    for path, status in [("/hello.UserService/SayHi", "13"), ("/proto.StreamService/Record", "0")]:
        args = ["curl", "-sS", "-v", "--max-time", "10", "--http2-prior-knowledge", "-X", "POST",
                "-H", "content-type: application/grpc", "-H", "te: trailers", f"http://127.0.0.1:{s.grpc_port}{path}"]
        verbose = subprocess.run(args, capture_output=True, timeout=30).stderr.decode(errors="replace")
        assert response_header(verbose, "grpc-status") == status, (path, verbose[-800:])


@pytest.mark.parametrize("method", ["sayhi", "list", "route", "record"])
def test_streams_reset_after_their_request_leave_no_rpc_behind(start_sluice, method):
    """A client that resets each stream right after sending its request (a rapid-reset pattern):
    every RPC must end, or they pile up against --max-concurrent-rpcs and lock every transport
    out."""
    import sluice_h2fuzz as h2fz
    s = start_sluice("--max-concurrent-rpcs", "50")
    path = h2fz.METHODS[method]

    def plan(conn, out, writer):
        for n in range(100):
            sid = 1 + 2 * n
            conn.send_headers(sid, h2fz.base_headers(path), end_stream=(n % 4 == 3))
            if n % 4 != 3:
                conn.send_data(sid, h2fz.body_for(__import__("random").Random(n), method), end_stream=(n % 2 == 0))
            conn.reset_stream(sid, error_code=8)
    asyncio.run(h2fz.exchange(s.grpc_port, plan))
    # The resets reach the server after our exchange returns: wait for the slots to come back.
    deadline = time.monotonic() + 10
    while (problems := asyncio.run(h2fz.say_hi(s.grpc_port))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert problems == [], "the reset streams' --max-concurrent-rpcs slots never came back"
    assert fz.wait_for_no_active_rpcs(s, timeout=10) == 0
    assert fz.say_hi_over_http(s.http_port)[0] == 200


# --- 2. client-set internal metadata pinned RPCs forever -----------------------------------------


def test_forged_gateway_metadata_cannot_pin_rpcs(start_sluice):
    s = start_sluice("--max-concurrent-rpcs", "3")

    async def pin(via_header):
        url = f"{s.ws}/proto.StreamService/Route"
        headers = {"grpc-metadata-sluice-rpc-id": "x"} if via_header else {}
        reader, writer = await asyncio.open_connection("127.0.0.1", s.http_port)
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(fz.handshake_bytes(s.http_port, "/proto.StreamService/Route", extra))
        if not via_header:
            writer.write(fz.text(json.dumps({"$metadata": {"sluice-rpc-id": "x"}}).encode()))
        for n in range(40):  # more than the 32-message window, never reading an answer
            writer.write(fz.text(json.dumps({"pt": {"name": "p", "value": n}}).encode()))
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.transport.abort()  # hang up without a Close

    async def go():
        await asyncio.gather(pin(True), pin(False), pin(True))
    asyncio.run(go())
    assert fz.wait_for_no_active_rpcs(s, timeout=10) == 0, "RPCs still pinned after their clients hung up"
    status, body = fz.say_hi_over_http(s.http_port)
    assert status == 200, (status, body)


@pytest.mark.parametrize("header, frame", [
    ({"grpc-metadata-sluice-rpc-id": "x"}, None),
    ({"grpc-metadata-sluice-transport": "http"}, None),
    (None, {"$metadata": {"sluice-rpc-id": "x"}}),
    (None, {"$metadata": {"Connection": "close"}}),
    (None, {"$metadata": {"proxy-authorization": "x"}}),
    (None, {"$metadata": {"bad key": "x"}}),
    (None, {"$metadata": {"x-text": "caf\u00e9"}}),
])
def test_reserved_or_invalid_metadata_is_refused_on_websocket(sluice, header, frame):
    frames = ([frame] if frame else []) + [{"pt": {"name": "a", "value": 1}}, {"$end": True}]
    received, close = ws_session(f"{sluice.ws}/proto.StreamService/Route", frames, headers=header)
    assert received[-1]["$end"]["code"] == 3 and close == 4003, received
    message = received[-1]["$end"]["message"]
    assert "reserved" in message or "not valid" in message or "ASCII" in message, message


def test_reserved_metadata_is_refused_over_http(sluice):
    request = fz.http_request("/hello.UserService/SayHi", b'{"name":"a"}', extra_headers="grpc-metadata-sluice-rpc-id: x\r\n")
    response = raw(sluice.http_port, request)
    assert status_of(response) == 400 and b"reserved" in response, response[:300]


def test_metadata_frames_are_bounded_like_headers(start_sluice):
    s = start_sluice("--max-header-bytes", "1024")
    frames = [{"$metadata": {"x-big": "v" * 2000}}, {"pt": {"value": 1}}, {"$end": True}]
    received, close = ws_session(f"{s.ws}/proto.StreamService/Route", frames)
    assert received[-1]["$end"]["code"] == 8 and "--max-header-bytes" in received[-1]["$end"]["message"], received


def test_native_clients_cannot_reach_the_gateway_namespace(start_sluice, stubs):
    s = start_sluice("--echo-metadata")
    with grpc.insecure_channel(s.grpc_target) as channel:
        stub = stubs.hello_pb2_grpc.UserServiceStub(channel)
        _, call = stub.SayHi.with_call(
            stubs.hello_pb2.Request(name="a"), timeout=10,
            metadata=[("sluice-rpc-id", "x"), ("sluice-transport", "http"), ("x-user", "ada")])
    echoed = dict(call.initial_metadata())
    assert echoed.get("echo-x-user") == "ada", echoed
    assert not any(k.startswith("echo-sluice-") for k in echoed), echoed
    # ... and it counted as a gRPC call, not as the transport it claimed.
    status, body = fz.http_get(s.http_port, "/metrics")
    assert 'transport="grpc"' in body.decode() and 'method="hello.UserService/SayHi",transport="http"' not in body.decode()


# --- 3. request bodies and WebSocket messages without a time limit -------------------------------


def test_a_trickled_http_body_gets_408(start_sluice):
    s = start_sluice("--body-timeout", "1")
    head = (b"POST /hello.UserService/SayHi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4194304\r\n\r\n")
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=10) as sock:
        sock.sendall(head)
        started = time.monotonic()
        received = b""
        sock.settimeout(0.5)
        while time.monotonic() - started < 8:
            try:
                sock.sendall(b"{")  # a byte every half second
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
    assert status_of(received) == 408, received[:300]
    assert b'"code":4' in received and b"--body-timeout" in received
    assert fz.say_hi_over_http(s.http_port)[0] == 200


def test_a_body_that_never_follows_100_continue_gets_408(start_sluice):
    s = start_sluice("--body-timeout", "1")
    head = (b"POST /hello.UserService/SayHi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: 20\r\n\r\n")
    received = raw(s.http_port, head)
    assert received.startswith(b"HTTP/1.1 100 Continue\r\n"), received[:200]
    final = received.split(b"\r\n\r\n", 1)[1]
    assert status_of(final) == 408 and b"--body-timeout" in final, received[:400]


def test_a_trickled_ndjson_line_ends_the_call(start_sluice):
    s = start_sluice("--body-timeout", "1")
    head = (b"POST /proto.StreamService/Record HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    line = b'{"pt":{"value":1}}\n'
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=10) as sock:
        sock.sendall(head + b"%x\r\n%s\r\n" % (len(line), line) + b"3\r\n{\"p\r\n")  # one line, then a partial one
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert status_of(received) == 408 and b"NDJSON line" in received, received[:300]


def test_an_unfinished_fragmented_websocket_message_ends_with_deadline_exceeded(start_sluice):
    s = start_sluice("--body-timeout", "1", "--ws-ping-interval", "0")
    # The final fragment never comes.
    out = asyncio.run(fz.raw_ws_case(s.http_port, "/proto.StreamService/Route", [fz.ws_frame(0x1, b'{"pt":', fin=False)],
                                     timeout=10))
    ends = [t for t in out.texts if "$end" in t]
    assert ends and ends[-1]["$end"]["code"] == 4 and "--body-timeout" in ends[-1]["$end"]["message"], out.texts
    assert out.close_code == 4004


def test_a_websocket_frame_trickled_in_ends_with_deadline_exceeded(start_sluice):
    s = start_sluice("--body-timeout", "1", "--ws-ping-interval", "0")
    frame = fz.text(b'{"pt":{"value":1}}')
    # A whole message first (answered), then all but the last bytes of the next frame.
    out = asyncio.run(fz.raw_ws_case(s.http_port, "/proto.StreamService/Route", [frame, frame[:-3]], timeout=10))
    ends = [t for t in out.texts if "$end" in t]
    assert out.texts[0] == {"pt": {"name": "gRPC Stream Server: Route", "value": 0}}, out.texts
    assert ends and ends[-1]["$end"]["code"] == 4, out.texts


def test_slow_uploads_share_one_memory_budget(start_sluice):
    """Fifty clients each send 1 MiB of a 4 MiB body and stall: past the budget they are refused
    with 429 instead of each holding its megabyte, and RSS stays near the budget."""
    budget = 16 << 20
    s = start_sluice("--max-buffered-request-bytes", str(budget), "--body-timeout", "60")
    head = (b"POST /hello.UserService/SayHi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4194304\r\n\r\n")
    before = s.rss_kib()
    socks, refused = [], 0
    try:
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", s.http_port), timeout=10)
            socks.append(sock)
            try:
                sock.sendall(head + b" " * (1 << 20))
            except (BrokenPipeError, ConnectionResetError):
                pass
        time.sleep(1)
        for sock in socks:
            sock.settimeout(0.2)
            try:
                answer = sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                answer = b""
            if status_of(answer) == 429:
                assert b"--max-buffered-request-bytes" in answer
                refused += 1
        grown_mib = (s.rss_kib() - before) / 1024
        print(f"slow uploads: {refused} of 50 refused, RSS grew {grown_mib:.0f} MiB (budget {budget >> 20} MiB)")
        assert refused >= 30, refused  # 16 MiB holds at most 16 of the 1 MiB bodies
        assert grown_mib < 3 * (budget >> 20) + 16, grown_mib
    finally:
        for sock in socks:
            sock.close()
    # The stalled uploads' bytes are given back when they go: requests fit again.
    deadline = time.monotonic() + 10
    while fz.say_hi_over_http(s.http_port)[0] != 200:
        assert time.monotonic() < deadline, "the budget was not given back"
        time.sleep(0.1)


# --- 4. the gRPC port held silent connections for hours ------------------------------------------


def test_a_silent_grpc_connection_is_closed_after_the_handshake_timeout(start_sluice):
    s = start_sluice("--handshake-timeout", "1")
    for greeting in [b"", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]:  # nothing at all; the preface but no SETTINGS
        with socket.create_connection(("127.0.0.1", s.grpc_port), timeout=10) as sock:
            sock.sendall(greeting)
            started = time.monotonic()
            try:
                while sock.recv(65536):
                    pass
            except ConnectionResetError:
                pass
            assert time.monotonic() - started < 5


def h2_connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def h2_events(sock, conn, until, timeout=10):
    """Reads frames until `until(events so far)` holds or the connection closes."""
    seen = []
    sock.settimeout(timeout)
    while not until(seen):
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        try:
            seen += conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            # h2 refuses frames after a GOAWAY (the server's last PING); the GOAWAY was read.
            seen.append(h2.events.ConnectionTerminated())
            break
        sock.sendall(conn.data_to_send())
    return seen


def test_the_grpc_port_advertises_max_concurrent_streams(start_sluice):
    for flag, want in [(None, 1000), ("77", 77)]:
        s = start_sluice(*(["--grpc-max-concurrent-streams", flag] if flag else []))
        sock, conn = h2_connect(s.grpc_port)
        with sock:
            events = h2_events(sock, conn, lambda seen: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in seen))
        settings = next(e for e in events if isinstance(e, h2.events.RemoteSettingsChanged)).changed_settings
        assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].new_value == want


def test_an_idle_grpc_connection_gets_goaway(start_sluice, stubs):
    s = start_sluice("--grpc-max-connection-idle", "1")
    sock, conn = h2_connect(s.grpc_port)
    with sock:
        started = time.monotonic()
        events = h2_events(sock, conn, lambda seen: any(isinstance(e, h2.events.ConnectionTerminated) for e in seen))
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in events), events
    assert time.monotonic() - started < 8


def test_an_old_grpc_connection_gets_goaway_and_its_stream_finishes(start_sluice, stubs):
    s = start_sluice("--grpc-max-connection-age", "1", "--pace-ms", "400")
    with grpc.insecure_channel(s.grpc_target) as channel:
        point = stubs.stream_pb2.StreamPoint(name="a", value=1)
        values = [r.pt.value for r in stubs.stream_pb2_grpc.StreamServiceStub(channel).List(
            stubs.stream_pb2.StreamRequest(pt=point), timeout=30)]  # 7 × 400 ms: past the age
        assert values == list(range(1, 8))
        # The channel reconnects by itself for the next call.
        assert stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="a"), timeout=10)
    sock, conn = h2_connect(s.grpc_port)
    with sock:
        events = h2_events(sock, conn, lambda seen: any(isinstance(e, h2.events.ConnectionTerminated) for e in seen))
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in events)


# --- 5. TLS 1.0/1.1 and static-RSA suites ----------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from conftest import make_pki

    # RSA: with an ECDSA key (trustme's default) static-RSA suites could not be offered at all.
    return make_pki(tmp_path_factory.mktemp("tls"), key_type=trustme.KeyType.RSA)


def openssl_handshake(port, *options):
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *options],
                         input=b"", capture_output=True, timeout=30)
    text = out.stdout.decode(errors="replace")
    return out.returncode == 0 and "Cipher is (NONE)" not in text and "New, " in text, text


@pytest.mark.parametrize("port_name", ["http_port", "grpc_port"])
def test_tls_is_1_2_or_later_with_forward_secret_aead_suites_only(start_sluice, pki, port_name):
    s = start_sluice("--tls-cert", str(pki["chain"]), "--tls-key", str(pki["key"]))
    port = getattr(s, port_name)
    weak = [
        ("-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"),
        ("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"),
        ("-tls1_2", "-cipher", "AES128-GCM-SHA256"),  # static RSA key exchange
        ("-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"),  # CBC
    ]
    for options in weak:
        ok, text = openssl_handshake(port, *options)
        assert not ok, f"{options} was accepted on the {port_name}:\n{text[-600:]}"
    for options in [("-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"), ("-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"),
                    ("-tls1_3",)]:
        ok, text = openssl_handshake(port, *options)
        assert ok, f"{options} was refused on the {port_name}:\n{text[-600:]}"


def test_grpcio_still_works_over_our_tls(start_sluice, pki, stubs):
    s = start_sluice("--tls-cert", str(pki["chain"]), "--tls-key", str(pki["key"]))
    credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{s.grpc_port}", credentials) as channel:
        reply = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="t"), timeout=10)
    assert reply.result.startswith("hi t---")


# --- 6. DNS rebinding and 7. Upgrade lists -------------------------------------------------------


def get(port, path, headers):
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return raw(port, f"GET {path} HTTP/1.1\r\n{extra}Connection: close\r\n\r\n".encode())


def ws_handshake(port, headers):
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"GET /proto.StreamService/List HTTP/1.1\r\n{extra}Connection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        return sock.recv(65536)


def test_a_rebound_host_name_is_not_same_origin(sluice):
    port = sluice.http_port
    evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    assert status_of(get(port, "/metrics", evil)) == 403
    assert status_of(ws_handshake(port, {**evil, "Upgrade": "websocket"})) == 403
    # A same-origin fetch sends no Origin on GET, but says it comes from a browser.
    assert status_of(get(port, "/metrics", {"Host": f"evil.example:{port}", "Sec-Fetch-Site": "same-origin"})) == 403
    # The gateway's own names still work, and tools that are no browser are not asked.
    for host in ["127.0.0.1", "localhost", "[::1]"]:
        own = {"Host": f"{host}:{port}", "Origin": f"http://{host}:{port}"}
        assert status_of(get(port, "/metrics", own)) == 200, host
        assert status_of(ws_handshake(port, {**own, "Upgrade": "websocket"})) == 101, host
    assert status_of(get(port, "/metrics", {"Host": f"evil.example:{port}"})) == 200
    # The scheme counts: this port serves http, so an https Origin is another origin.
    assert status_of(get(port, "/metrics", {"Host": f"127.0.0.1:{port}", "Origin": f"https://127.0.0.1:{port}"})) == 403


def test_allowed_host_names_a_gateway(start_sluice):
    s = start_sluice("--allowed-host", "gateway.example")
    named = {"Host": f"gateway.example:{s.http_port}", "Origin": f"http://gateway.example:{s.http_port}"}
    assert status_of(get(s.http_port, "/metrics", named)) == 200
    other = {"Host": f"evil.example:{s.http_port}", "Origin": f"http://evil.example:{s.http_port}"}
    assert status_of(get(s.http_port, "/metrics", other)) == 403


@pytest.mark.parametrize("upgrade", ["websocket, x", "x, websocket", "WebSocket", "websocket ,h2c"])
def test_an_upgrade_list_does_not_skip_the_origin_check(sluice, upgrade):
    port = sluice.http_port
    answer = ws_handshake(port, {"Host": f"127.0.0.1:{port}", "Origin": "http://evil.example", "Upgrade": upgrade})
    assert status_of(answer) == 403, answer[:200]


# --- 8. out-of-range flags -----------------------------------------------------------------------


@pytest.mark.parametrize("flag, value", [
    ("--idle-timeout", "1e10"), ("--idle-timeout", "1e16"), ("--handshake-timeout", "nan"), ("--send-timeout", "inf"),
    ("--drain-timeout", "1e300"), ("--ws-ping-interval", "-1"), ("--body-timeout", "0"),
    ("--max-json-depth", "100000"), ("--max-message-bytes", "99999999999999"), ("--grpc-max-concurrent-streams", "0"),
    ("--grpc-max-connection-age", "1e12"), ("--pace-ms", "-5"), ("--max-connections", "0"),
])
def test_an_out_of_range_flag_stops_sluice_at_start_with_its_name(flag, value):
    import os
    from conftest import ROOT
    binary = os.environ.get("SLUICE_BIN") or str(ROOT / ".build" / "release" / "sluice")
    out = subprocess.run([binary, "--grpc-port", "0", "--http-port", "0", flag, value],
                         capture_output=True, text=True, timeout=20, env=dict(os.environ, SWIFT_BACKTRACE="enable=no"))
    assert out.returncode not in (0, None) and out.returncode > 0, (out.returncode, out.stderr[-500:])
    assert flag in out.stderr, out.stderr[-500:]


# --- hardening -------------------------------------------------------------------------------------


def test_metrics_need_the_bearer_token_when_one_is_required(start_sluice, tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("s3cret\n")
    s = start_sluice("--require-bearer", f"file:{tokens}")
    denied = get(s.http_port, "/metrics", {"Host": "127.0.0.1"})
    assert status_of(denied) == 401 and b"WWW-Authenticate: Bearer" in denied
    assert status_of(get(s.http_port, "/metrics", {"Host": "127.0.0.1", "Authorization": "Bearer wrong"})) == 401
    allowed = get(s.http_port, "/metrics", {"Host": "127.0.0.1", "Authorization": "Bearer s3cret"})
    assert status_of(allowed) == 200 and b"sluice_connections_open" in allowed


def test_answers_say_nosniff_and_vary_on_origin(sluice):
    port = sluice.http_port
    for response in [
        get(port, "/", {"Host": "127.0.0.1"}),  # a file
        get(port, "/no-such-file", {"Host": "127.0.0.1"}),  # a JSON error
        raw(port, fz.http_request("/hello.UserService/SayHi", b'{"nme":"a"}')),  # a call's error
        raw(port, fz.http_request("/hello.UserService/SayHi", b'{"name":"a"}')),  # a call's answer
    ]:
        head = response.split(b"\r\n\r\n", 1)[0].lower()
        assert b"x-content-type-options: nosniff" in head and b"vary: origin" in head, head


def test_echo_metadata_never_echoes_credentials(start_sluice, stubs):
    s = start_sluice("--echo-metadata")
    with grpc.insecure_channel(s.grpc_target) as channel:
        _, call = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi.with_call(
            stubs.hello_pb2.Request(name="a"), timeout=10,
            metadata=[("authorization", "Bearer t"), ("cookie", "a=b"), ("x-user", "ada")])
    echoed = dict(call.initial_metadata())
    assert echoed.get("echo-x-user") == "ada"
    assert "echo-authorization" not in echoed and "echo-cookie" not in echoed, echoed


def test_get_calls_can_be_turned_off(start_sluice):
    s = start_sluice("--no-get-calls")
    answer = get(s.http_port, "/proto.StreamService/List?request=%7B%7D", {"Host": "127.0.0.1"})
    assert status_of(answer) == 405 and b"Allow: POST, PUT, OPTIONS" in answer
    posted = raw(s.http_port, fz.http_request("/proto.StreamService/List", b'{"pt":{"value":1}}'))
    assert status_of(posted) == 200

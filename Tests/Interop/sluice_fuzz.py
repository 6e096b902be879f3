"""A live-gateway fuzzer for Sluice's HTTP/1.1 port: WebSocket/JSON sessions and HTTP JSON calls.

Shared by Tests/Interop/test_fuzz.py (bounded, in the regular suite) and scripts/fuzz.sh (100,000
cases). Every case is generated from its own `random.Random(f"{seed}-{index}")`, so one case can be
replayed alone (`SLUICE_FUZZ_SEED=<seed> SLUICE_FUZZ_ONLY=<index>`). A case is bytes on the wire
(raw asyncio sockets, or the `websockets` client for well-formed sessions) plus an expectation:

- "ok": a valid request; the exact answer is checked (List echoes the name, Route counts, ...).
- "error": garbage; the RPC must end with a non-zero status ($end code != 0, or an HTTP error).
- "any": the contract leaves the answer open; only the invariants below are checked.
- "violation": a WebSocket protocol violation (RFC 6455 says: fail the connection); the server
  must send a Close (1002/1007/1009, or $end with code != 0 then Close 4000+code) and must not carry
  on as if nothing happened (a pong to a later probe ping, then nothing, counts as ignored).
- "abandoned": the client cuts the connection short (FIN or RST mid-frame/mid-body); the server
  must close its side promptly; nothing else is required.

Invariants for every WebSocket session past the handshake (unless "violation"/"abandoned"): every
server text frame is a JSON object, exactly one `{"$end":{...}}`, it is the last text frame, then
a Close with 1000 (code 0) or 4000+code whose reason is part of the status message, then TCP
close. Every HTTP request gets a well-formed HTTP/1.1 response; errors carry `application/json`
with `{"code":N,"message":...}` and a status matching the gRPC code; streams end with one `$end`.
"""
import asyncio
import base64
import collections
import json
import os
import random
import socket
import struct
import time

LIST_COUNT = 7
DEFAULT_TIMEOUT = 15.0

# gRPC code -> the HTTP statuses the README's mapping allows for it.
HTTP_FOR_CODE = {
    1: {499}, 2: {500}, 3: {400}, 4: {504}, 5: {404}, 6: {409}, 7: {403}, 8: {429, 413, 431}, 9: {400, 500},
    10: {409}, 11: {400}, 12: {501, 405}, 13: {500}, 14: {503}, 15: {500}, 16: {401},
}

PATHS = {
    "list": "/proto.StreamService/List",
    "record": "/proto.StreamService/Record",
    "route": "/proto.StreamService/Route",
    "sayhi": "/hello.UserService/SayHi",
    "data": "/DataService/BidirectionalStream",
}
STREAMING_IN = {"record", "route", "data"}  # methods that wait for the client's half-close


# --- WebSocket frames ---------------------------------------------------------------------------


def ws_frame(op, payload=b"", fin=True, mask=True, rsv=0, declared=None, key=None, msb=False):
    """One client frame. `declared` overrides the length in the header (for truncation and lies)."""
    n = len(payload) if declared is None else declared
    b0 = (0x80 if fin else 0) | (rsv << 4) | (op & 0x0F)
    m = 0x80 if mask else 0
    if n < 126:
        header = bytes([b0, m | n])
    elif n < 65536:
        header = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        header = bytes([b0, m | 127]) + struct.pack("!Q", n | ((1 << 63) if msb else 0))
    if msb and n < 65536:
        header = bytes([b0, m | 127]) + struct.pack("!Q", n | (1 << 63))
    if not mask:
        return header + payload
    key = key or os.urandom(4)
    return header + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def text(payload):
    return ws_frame(1, payload if isinstance(payload, bytes) else payload.encode())


HANDSHAKE_KEY = base64.b64encode(b"sluice-fuzz-key!").decode()


def handshake_bytes(port, path, extra=""):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {HANDSHAKE_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


class WSOutcome:
    def __init__(self):
        self.status = None          # handshake status line
        self.texts = []             # decoded server text frames (JSON objects, or raw on error)
        self.pongs = []             # payloads of server pong frames
        self.close_code = None      # server Close code (None: no Close frame)
        self.close_reason = ""
        self.eof = False            # server closed TCP
        self.timed_out = False
        self.problems = []          # malformed server output
        self.probe_answered = False  # our probe ping was answered before any Close
        self.reset = None           # the connection was reset (ECONNRESET) instead of closed


async def _read_exact(reader, n):
    return await reader.readexactly(n)


async def read_server_frame(reader, out):
    """Returns (fin, op, payload) or None at EOF (or reset, noted in `out.reset`)."""
    problems = out.problems
    try:
        b0, b1 = await _read_exact(reader, 2)
    except asyncio.IncompleteReadError:
        return None
    except ConnectionError as e:
        out.reset = f"{type(e).__name__}: {e}"
        return None
    if b1 & 0x80:
        problems.append("server frame is masked")
    if b0 & 0x70:
        problems.append("server frame has RSV bits set")
    n = b1 & 0x7F
    try:
        if n == 126:
            n = struct.unpack("!H", await _read_exact(reader, 2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await _read_exact(reader, 8))[0]
        key = await _read_exact(reader, 4) if b1 & 0x80 else None
        payload = await _read_exact(reader, n)
    except (asyncio.IncompleteReadError, ConnectionError) as e:
        problems.append(f"server frame truncated by EOF or reset ({type(e).__name__})")
        return None
    if key:
        payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    return bool(b0 & 0x80), b0 & 0x0F, payload


async def raw_ws_case(port, path, chunks, after="keep", probe=False, timeout=DEFAULT_TIMEOUT,
                      handshake_extra="", pause=0.0, client_closes=False, coalesce=False):
    """Runs one raw WebSocket session: handshake, write `chunks` (bytes, written one by one), then
    `after`: "keep" (wait for the server to end it), "fin" (shutdown our write side), "rst" (reset).
    With `probe`, a ping follows the chunks to detect a server that ignored a violation. With
    `coalesce`, the first chunk goes in the same write as the handshake, before the 101."""
    out = WSOutcome()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    except OSError as e:
        out.problems.append(f"connect failed: {e}")
        return out
    try:
        early = chunks[0] if coalesce and chunks else b""
        if early:
            chunks = chunks[1:]
        writer.write(handshake_bytes(port, path, handshake_extra) + early)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            out.problems.append("no handshake response")
            return out
        out.status = head.split(b"\r\n", 1)[0].decode("latin-1")
        if not out.status.startswith("HTTP/1.1 101"):
            return out
        for c in chunks:
            writer.write(c)
            if pause:
                await writer.drain()
                await asyncio.sleep(pause)
        if probe:
            writer.write(ws_frame(9, b"probe"))
        try:
            await writer.drain()
        except ConnectionError:
            pass
        if after == "rst":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            out.eof = True
            return out
        if after == "fin":
            try:
                writer.write_eof()
            except (OSError, RuntimeError):
                pass
        await asyncio.wait_for(_read_session(reader, writer, out, probe, after if not client_closes else "fin"), timeout)
    except asyncio.TimeoutError:
        out.timed_out = True
    except ConnectionError as e:
        out.eof = True
        out.reset = str(e)
    finally:
        writer.transport.abort()
    return out


async def _read_session(reader, writer, out, probe, after):
    fragments = None
    probe_deadline = None
    while True:
        if probe_deadline is not None:
            # Our probe was answered and no Close came: give the server 1 s to close anyway.
            remaining = probe_deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                frame = await asyncio.wait_for(read_server_frame(reader, out), remaining)
            except asyncio.TimeoutError:
                return
        else:
            frame = await read_server_frame(reader, out)
        if frame is None:
            out.eof = True
            return
        fin, op, payload = frame
        if op == 0:
            if fragments is None:
                out.problems.append("server continuation frame without a start")
                continue
            fragments += payload
            if fin:
                _add_text(out, fragments)
                fragments = None
        elif op == 1:
            if fin:
                _add_text(out, payload)
            else:
                fragments = payload
        elif op == 2:
            out.problems.append(f"server sent a binary frame {payload[:60]!r}")
        elif op == 9:
            pass
        elif op == 10:
            out.pongs.append(payload)
            if probe and payload == b"probe" and out.close_code is None:
                out.probe_answered = True
                probe_deadline = time.monotonic() + 1.0
        elif op == 8:
            if len(payload) >= 2:
                out.close_code = struct.unpack("!H", payload[:2])[0]
                out.close_reason = payload[2:].decode("utf-8", "replace")
            else:
                out.close_code = 1005
            probe_deadline = None
            try:
                if after != "fin":
                    writer.write(ws_frame(8, payload[:2]))
                    await writer.drain()
            except (ConnectionError, RuntimeError):
                pass
            # The server closes TCP after our Close; wait for that.
            try:
                rest = b""
                while chunk := await asyncio.wait_for(reader.read(1 << 16), 5):
                    rest += chunk
                out.eof = True
                # RFC 6455 5.5.1: no data frames after a Close (a pong may still be in flight).
                ops = _frame_opcodes(rest)
                if any(o not in (9, 10) for o in ops):
                    out.problems.append(f"frames after the server's Close (opcodes {ops}): {rest[:80]!r}")
            except asyncio.TimeoutError:
                out.problems.append("the server did not close TCP within 5 s of the Close handshake")
            except ConnectionError:
                out.eof = True
            return
        else:
            out.problems.append(f"server sent opcode {op}")


def _frame_opcodes(data):
    ops = []
    while len(data) >= 2:
        n = data[1] & 0x7F
        h = 2
        if n == 126:
            n, h = struct.unpack("!H", data[2:4])[0] if len(data) >= 4 else 0, 4
        elif n == 127:
            n, h = struct.unpack("!Q", data[2:10])[0] if len(data) >= 10 else 0, 10
        ops.append(data[0] & 0x0F)
        data = data[h + n:]
    if data:
        ops.append(-1)  # a stray byte
    return ops


def _add_text(out, payload):
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        out.problems.append(f"server text frame is not JSON: {payload[:120]!r}")
        return
    if not isinstance(value, dict):
        out.problems.append(f"server text frame is not a JSON object: {payload[:120]!r}")
    out.texts.append(value)


async def lib_ws_case(port, path, frames, timeout=DEFAULT_TIMEOUT):
    """The same session with the `websockets` client (well-formed frames only)."""
    import websockets
    from websockets.exceptions import ConnectionClosed

    out = WSOutcome()

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=timeout,
                                      close_timeout=5, ping_interval=None, compression=None) as ws:
            out.status = "HTTP/1.1 101"
            try:
                for f in frames:
                    await ws.send(f)
            except ConnectionClosed:
                pass
            try:
                async for m in ws:
                    if isinstance(m, bytes):
                        out.problems.append(f"server sent a binary frame {m[:60]!r}")
                    else:
                        _add_text(out, m.encode())
            except ConnectionClosed:
                pass
        rcvd = ws.protocol.close_rcvd
        if rcvd is not None:
            out.close_code, out.close_reason = rcvd.code, rcvd.reason
        out.eof = True

    try:
        await asyncio.wait_for(go(), timeout)
    except asyncio.TimeoutError:
        out.timed_out = True
    except (OSError, websockets.exceptions.WebSocketException) as e:
        out.problems.append(f"websockets: {type(e).__name__}: {e}")
    return out


# --- HTTP --------------------------------------------------------------------------------------


class HTTPOutcome:
    def __init__(self):
        self.status = None
        self.headers = {}
        self.body = b""
        self.eof_without_response = False
        self.timed_out = False
        self.problems = []
        self.second = None  # (status, body) of a follow-up request on the same connection


async def _read_response(reader, out):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial:
            out.problems.append(f"truncated response head {e.partial[:200]!r}")
        else:
            out.eof_without_response = True
        return False
    except ConnectionError:
        out.eof_without_response = True
        return False
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "HTTP/1.1" or not parts[1].isdigit() or len(parts[1]) != 3:
        out.problems.append(f"malformed status line {lines[0]!r}")
        return False
    out.status = int(parts[1])
    for line in lines[1:]:
        if not line:
            continue
        if ":" not in line:
            out.problems.append(f"malformed header line {line!r}")
            continue
        k, v = line.split(":", 1)
        out.headers.setdefault(k.strip().lower(), []).append(v.strip())
    te = ",".join(out.headers.get("transfer-encoding", [])).lower()
    try:
        if "chunked" in te:
            body = b""
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                body += await reader.readexactly(size)
                if await reader.readexactly(2) != b"\r\n":
                    out.problems.append("chunk not followed by CRLF")
            out.body = body
        elif "content-length" in out.headers:
            out.body = await reader.readexactly(int(out.headers["content-length"][0]))
        elif out.status in (101, 204, 304) or 100 <= out.status < 200:
            out.body = b""
        else:
            out.body = await reader.read()
    except (asyncio.IncompleteReadError, ValueError, ConnectionError) as e:
        out.problems.append(f"response body malformed or truncated: {type(e).__name__} {str(e)[:100]}")
        return False
    return True


async def raw_http_case(port, chunks, after="keep", timeout=DEFAULT_TIMEOUT, follow_up=None):
    out = HTTPOutcome()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    except OSError as e:
        out.problems.append(f"connect failed: {e}")
        return out
    try:
        for c in chunks:
            writer.write(c)
        t = time.monotonic()
        try:
            await asyncio.wait_for(writer.drain(), timeout)
        except ConnectionError:
            pass
        except asyncio.TimeoutError:
            out.problems.append(f"HANG: the server stopped reading the request for {timeout:.0f} s "
                                "without answering or closing")
        if time.monotonic() - t > 5:
            out.problems.append(f"SLOW: the server took {time.monotonic() - t:.1f} s to take the request bytes")
        if after == "rst":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            out.eof_without_response = True
            return out
        if after == "fin":
            try:
                writer.write_eof()
            except (OSError, RuntimeError):
                pass

        async def go():
            while True:
                ok = await _read_response(reader, out)
                if ok and out.status == 100:  # 100 Continue: the real response follows
                    out.headers, out.body = {}, b""
                    continue
                return ok

        ok = await asyncio.wait_for(go(), timeout)
        if ok and follow_up is not None and "close" not in ",".join(out.headers.get("connection", [])).lower():
            writer.write(follow_up)
            second = HTTPOutcome()
            if await asyncio.wait_for(_read_response(reader, second), timeout):
                out.second = (second.status, second.body)
            else:
                out.second = (None, second.problems)
    except asyncio.TimeoutError:
        out.timed_out = True
    except ConnectionError:
        out.eof_without_response = out.status is None
    finally:
        writer.transport.abort()
    return out


def http_request(path, body, method="POST", content_type="application/json", extra_headers="",
                 chunked=False, content_length=None, connection="close"):
    h = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if content_type is not None:
        h += f"Content-Type: {content_type}\r\n"
    if connection:
        h += f"Connection: {connection}\r\n"
    h += extra_headers
    if chunked:
        h += "Transfer-Encoding: chunked\r\n\r\n"
        data = b""
        rest = body
        rng = random.Random(len(body))
        while rest:
            n = rng.randint(1, max(1, len(rest)))
            data += b"%x\r\n" % n + rest[:n] + b"\r\n"
            rest = rest[n:]
        return h.encode() + data + b"0\r\n\r\n"
    cl = len(body) if content_length is None else content_length
    h += f"Content-Length: {cl}\r\n\r\n"
    return h.encode() + body


# --- generators --------------------------------------------------------------------------------

UNICODE_SAMPLES = ["", "a", "ada", "héllo", "日本語", "😀", "\u0000", "\u001f", "\\", '"', "\u2028", "\ufeff",
                   "a\nb", "\t", "𝄞x", "\u00ff", "/", "<script>", "$end", "{\"pt\":1}"]


def random_name(rng):
    k = rng.random()
    if k < 0.4:
        return rng.choice(UNICODE_SAMPLES)
    if k < 0.7:
        return "".join(rng.choice(UNICODE_SAMPLES) for _ in range(rng.randint(1, 5)))
    if k < 0.9:
        return "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(rng.randint(0, 40)))
    # Any code point but surrogates.
    out = []
    for _ in range(rng.randint(1, 10)):
        c = rng.randint(0, 0x10FFFF)
        if 0xD800 <= c <= 0xDFFF:
            c = 0x41
        out.append(chr(c))
    return "".join(out)


def random_int32(rng):
    return rng.choice([0, 1, -1, 7, 2**31 - 1, -(2**31), 2**31 - 7, rng.randint(-(2**31), 2**31 - 1),
                       rng.randint(-1000, 1000)])


def dumps(obj, rng):
    """JSON text in one of a few valid spellings."""
    k = rng.random()
    if k < 0.6:
        return json.dumps(obj, separators=(",", ":"))
    if k < 0.8:
        return json.dumps(obj, ensure_ascii=False)
    return json.dumps(obj, indent=rng.choice([None, 1, "\t"]), ensure_ascii=rng.random() < 0.5)


def stream_request(rng, with_name=True):
    pt = {}
    if with_name and rng.random() < 0.8:
        pt["name"] = random_name(rng)
    if rng.random() < 0.8:
        v = random_int32(rng)
        pt["value"] = str(v) if rng.random() < 0.1 else v  # numbers or strings are accepted
    return {"pt": pt} if rng.random() < 0.95 else {}


def wrap_int32(v):
    return (v + 2**31) % 2**32 - 2**31


def expected_responses(method, requests):
    """The exact answers of the hosted services to valid `requests` (dicts), as JSON values."""
    def pt_of(r):
        pt = r.get("pt") or {}
        return pt.get("name", ""), int(pt.get("value", 0))
    if method == "list":
        name, v = pt_of(requests[0])
        return [{"pt": {"name": name, "value": wrap_int32(v + n)}} for n in range(LIST_COUNT)]
    if method == "route":
        return [{"pt": {"name": "gRPC Stream Server: Route", "value": n}} for n in range(len(requests))]
    if method == "record":
        return [{"pt": {"name": "gRPC Stream Server: Record", "value": 1}}]
    if method == "data":
        return [{"result": f"processed: {r.get('data', '')}"} for r in requests]
    if method == "sayhi":
        return ["sayhi:" + requests[0].get("name", "")]
    raise AssertionError(method)


def valid_requests(rng, method):
    if method in ("list", "route", "record"):
        n = 1 if method == "list" else rng.randint(0 if method != "record" else 0, 5)
        return [stream_request(rng) for _ in range(n)]
    if method == "sayhi":
        return [{"name": random_name(rng)} if rng.random() < 0.9 else {}]
    return [{"data": random_name(rng)} if rng.random() < 0.9 else {} for _ in range(rng.randint(0, 5))]


def deep(rng):
    """A deeply nested document (10,000 levels by default) in one of several shapes."""
    d = rng.choice([10_000, 10_000, 5_000, 101, 1_000])
    return rng.choice([
        lambda: "[" * d + "]" * d,
        lambda: "[" * d,
        lambda: '{"a":' * d + "1" + "}" * d,
        lambda: '{"pt":' * d + "{}" + "}" * d,
        lambda: '{"pt":{"name":' + "[" * d + "]" * d + "}}",
        lambda: '{"pt":{"value":' + "[" * d + "]" * d + "}}",
        lambda: '{"pt":' + '{"pt":' * d,
        lambda: '{"pt":{"name":"x"},"z":' + '{"a":[' * (d // 2) + "]}" * (d // 2) + "}",
        lambda: "{" * d,
        lambda: '[{"a":' * (d // 2) + "0" + "}]" * (d // 2),
    ])()


HUGE_NUMBERS = ["1e400", "-1e400", "1" * 100, "-" + "9" * 100, "2147483648", "-2147483649", "4294967296",
                "1.5", "-0.5", "1e10", "9223372036854775808", "18446744073709551616", '"1e400"', '"' + "1" * 100 + '"',
                '"2147483648"', '"abc"', '"1.5"', '"NaN"', '"Infinity"', "0.1e1000", "1e-400000", "123456789012345678901234567890e-20"]
INVALID_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "+1", "01", "0x10", ".5", "5.", "1e", "--1", "1_000"]
AMBIGUOUS_NUMBERS = ["1.0", "1e2", "-0", "1E2", "2147483647.0", "0e0", "-0.0", '"-0"', '" 1"', '"1 "', '"0x10"']


def garbage_message(rng, method):
    """Returns (json_text, family, expectation). The text is sent as one message (frame or body)."""
    valid = valid_requests(rng, method)
    base = valid[0] if valid else ({"pt": {"name": "x", "value": 1}} if method in ("list", "route", "record")
                                   else ({"name": "x"} if method == "sayhi" else {"data": "x"}))
    base_text = json.dumps(base)
    strfield = "name" if method in ("sayhi",) else ("data" if method == "data" else None)
    families = ["truncated", "deep", "huge_number", "invalid_number", "ambiguous_number", "wrong_type",
                "unknown_field", "not_object", "mutated", "duplicate", "surrogate", "control_chars", "trailing"]
    family = rng.choice(families)
    if family == "truncated":
        t = base_text if len(base_text) > 2 else '{"pt":{"name":"x"}}'
        return t[: rng.randint(0, len(t) - 1)], family, "error"
    if family == "deep":
        return deep(rng), family, "error"
    if family in ("huge_number", "invalid_number", "ambiguous_number"):
        pool = {"huge_number": HUGE_NUMBERS, "invalid_number": INVALID_JSON_NUMBERS,
                "ambiguous_number": AMBIGUOUS_NUMBERS}[family]
        num = rng.choice(pool)
        if method in ("list", "route", "record"):
            t = f'{{"pt":{{"name":"n","value":{num}}}}}'
        else:
            t = f'{{"{strfield}":{num}}}'  # a number where a string belongs is wrong; a string is fine
            return t, family, ("ok" if num.startswith('"') else "error")
        if family == "ambiguous_number" or num in ('"1.5"',):
            return t, family, "any"
        if num == "1e-400000":
            return t, family, "any"  # underflows to 0, an integer
        if num == "123456789012345678901234567890e-20":
            return t, family, "any"
        return t, family, "error"
    if family == "wrong_type":
        bad = rng.choice(["true", "false", "[]", "{}", '"x"', "1", "[1]", '{"a":1}'])
        if method in ("list", "route", "record"):
            t = rng.choice([f'{{"pt":{bad}}}', f'{{"pt":{{"name":{bad}}}}}', f'{{"pt":{{"value":{bad}}}}}'])
            if t in ('{"pt":{}}', '{"pt":{"name":"x"}}') or t.endswith('"value":1}}'):
                return t, family, "ok"
            if t == '{"pt":{"value":"x"}}':
                return t, family, "error"
        else:
            if bad == '"x"':
                bad = "true"
            t = f'{{"{strfield}":{bad}}}'
        return t, family, "error"
    if family == "unknown_field":
        k = rng.choice(["vlaue", "zzz", "$x", "Pt", "PT", "pt ", "", "\u00e9", "value\u0000", "__proto__", "constructor"])
        if method in ("list", "route", "record"):
            t = rng.choice([json.dumps({k: 1}), json.dumps({"pt": {k: 1}}), json.dumps({"pt": {"name": "a"}, k: None})])
        else:
            t = json.dumps({strfield: "a", k: 1})
        if k.startswith("$") and not t.startswith('{"pt"'):
            pass  # a top-level $x is an unknown control frame on the WebSocket, an unknown field in HTTP
        return t, family, "error"
    if family == "not_object":
        return rng.choice(["[]", "1", '"x"', "null", "true", "[{}]", '[{"pt":{}}]', "", " ", "\n"]), family, "error"
    if family == "mutated":
        b = bytearray(base_text.encode())
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            i = rng.randint(0, max(0, len(b) - 1))
            if op < 0.33 and b:
                b[i] = rng.randint(0, 255)
            elif op < 0.66:
                b.insert(i, rng.choice(b'{}[]",:\\0123456789eE.-+ \x00\xff\xc3tfn'))
            elif b:
                del b[i]
        return bytes(b), family, "any"
    if family == "duplicate":
        if method in ("list", "route", "record"):
            return '{"pt":{"value":1,"value":2}}', family, "any"
        return f'{{"{strfield}":"a","{strfield}":"b"}}', family, "any"
    if family == "surrogate":
        s = rng.choice(['"\\ud800"', '"\\udc00x"', '"\\ud800\\u0041"', '"\\uZZZZ"', '"\\u12"', '"\\x41"', '"\\q"'])
        field = strfield or "pt"
        t = f'{{"{field}":{s}}}' if strfield else f'{{"pt":{{"name":{s}}}}}'
        return t, family, ("any" if "ud8" in s or "udc" in s else "error")
    if family == "control_chars":
        c = rng.choice(["\x00", "\x01", "\x1f", "\n", "\t"])
        field = strfield or "name"
        t = f'{{"{field}":"a{c}b"}}' if strfield else f'{{"pt":{{"name":"a{c}b"}}}}'
        return t, family, "error"
    # trailing garbage after a valid document
    return base_text + rng.choice(["x", "}", "]", ",", " {}", "\x00", "//c", " 1"]), family, "error"


# --- cases -------------------------------------------------------------------------------------


class Case:
    def __init__(self, index, category, transport, method, description, expect, run, check):
        self.index = index
        self.category = category
        self.transport = transport
        self.method = method
        self.description = description  # enough to reproduce: the bytes on the wire (shortened)
        self.expect = expect
        self.run = run
        self.check = check


def short(b, n=240):
    r = repr(b)
    return r if len(r) <= n else r[: n // 2] + f" ...({len(b)} bytes)... " + r[-n // 2:]


def ws_message_case(rng, index, port_ref, max_bytes):
    method = rng.choice(list(PATHS))
    path = PATHS[method]
    frames = []   # bytes or str payloads of text frames (str = JSON text)
    expect, family, requests, expect_code = "ok", "valid", None, None
    k = rng.random()
    pongs_expected = []
    if k < 0.3:
        requests = valid_requests(rng, method)
        if method in ("list", "sayhi") and rng.random() < 0.2:
            printable = "".join(c for c in random_name(rng) if " " <= c <= "~")  # gRPC text values
            frames.append(json.dumps({"$metadata": {"x-fuzz": printable[:20] or "v"},
                                      "$timeoutMs": 60000}))
        for r in requests:
            frames.append(dumps(r, rng))
            if rng.random() < 0.1 and method in STREAMING_IN:  # List and SayHi may be over before it is read
                n = rng.randint(-5, 10**6)
                frames.append(json.dumps({"$ping": n}))
                pongs_expected.append(n)
        if method in ("list", "sayhi") and not requests:
            expect, expect_code = "error", 3
    elif k < 0.85:
        t, family, expect = garbage_message(rng, method)
        if family == "not_object" and t in ("", " ", "\n"):
            pass
        frames.append(t)
        if method in ("list", "sayhi") and expect == "ok":
            pass
    else:
        family = rng.choice(["binary", "oversized", "control", "second_message", "cancel", "empty_end"])
        if family == "binary":
            frames.append(b"\x00" + os.urandom(rng.randint(0, 50)))
            expect, expect_code = "error", 3
        elif family == "oversized":
            n = max_bytes + rng.randint(1, 4096)
            frames.append('{"pt":{"name":"' + "x" * n + '"}}')
            expect, expect_code = "error", 8
        elif family == "control":
            frame, expect = rng.choice([
                ('{"$metadata":"x"}', "error"), ('{"$metadata":{"k":1}}', "error"), ('{"$metadata":[]}', "error"),
                ('{"$timeoutMs":"soon"}', "error"), ('{"$timeoutMs":1e400}', "error"), ('{"$timeoutMs":-1}', "any"),
                ('{"$timeoutMs":0}', "any"), ('{"$end":false}', "any"), ('{"$end":1}', "any"), ('{"$cancel":false}', "any"),
                ('{"$ping":"x"}', "any"), ('{"$ping":1e400}', "any"), ('{"$bogus":1}', "error"), ('{"$":1}', "error"),
                ('{"$metadata":{"bad key":"v"}}', "any"), ('{"$metadata":{"k":"v\\r\\nx: y"}}', "any"),
                ('{"$metadata":{"":"v"}}', "any"), ('{"$metadata":{"k":["a",1]}}', "error"),
                ('{"$end":true,"pt":{}}', "any"), ('{"pt":{},"$cancel":true}', "any"),
                ('{"$metadata":{"grpc-timeout":"1n"}}', "any"), ('{"$metadata":{"content-type":"x"}}', "any"),
                ('{"$metadata":{"k-bin":"!!!"}}', "any"), ('{"$timeoutMs":99999999999999999999}', "any"),
            ])
            frames.append(frame)
            frames.append(json.dumps({"data": "z"} if method == "data" else ({"name": "z"} if method == "sayhi" else {"pt": {}})))
        elif family == "second_message":
            if method in ("list", "sayhi"):
                frames += [json.dumps(valid_requests(rng, method)[0])] * 2
                expect = "any"  # with --pace-ms 0 the RPC may be over before the second one arrives
            else:
                frames.append(json.dumps({"$metadata": {}}))
                frames.append(json.dumps({"$metadata": {}}))
                expect, expect_code = "error", 3
        elif family == "cancel":
            frames += [json.dumps({"pt": {}} if method != "data" else {"data": "c"}), '{"$cancel":true}']
            expect = "any" if method in ("list", "sayhi") else "error"
            expect_code = None if expect == "any" else 1
        else:
            frames.append('{"$end":true}')
            expect = "error" if method in ("list", "sayhi") else "ok"
            requests = []
            expect_code = 3 if expect == "error" else None
    # Half-close after the frames (for unary and server streaming the first message already did,
    # and the extra $end or Close is harmless; it also ends sessions whose garbage started nothing).
    half_close = rng.choice(["$end", "$end", "close"])
    if method not in STREAMING_IN and expect in ("ok", "error") and rng.random() < 0.5:
        half_close = None
    # A garbage text frame ends the session; the half-close after it is harmless.
    via_lib = rng.random() < 0.3 and all(isinstance(f, str) or family == "binary" for f in frames)
    coalesce = not via_lib and rng.random() < 0.25
    description = (f"WS {path} frames={short([f if isinstance(f, str) else f for f in frames])} then {half_close}"
                   + (" (first frame with the handshake)" if coalesce else ""))

    async def run():
        port = port_ref()
        if via_lib:
            fs = list(frames)
            if half_close:
                fs.append('{"$end":true}')  # the library's Close would end the read side too early
            return await lib_ws_case(port, path, fs)
        chunks = [text(f) if isinstance(f, str) else (ws_frame(2, f) if family == "binary" else text(f)) for f in frames]
        if half_close == "$end":
            chunks.append(text('{"$end":true}'))
        elif half_close == "close":
            chunks.append(ws_frame(8, struct.pack("!H", 1000)))
        # Sometimes split the bytes over several writes, at odd places.
        if rng.random() < 0.2:
            blob = b"".join(chunks)
            cuts = sorted(rng.sample(range(1, len(blob)), min(3, len(blob) - 1))) if len(blob) > 1 else []
            chunks = [blob[a:b] for a, b in zip([0] + cuts, cuts + [len(blob)])]
            return await raw_ws_case(port, path, chunks, pause=0.002, client_closes=half_close == "close")
        # Sometimes send the first frame with the handshake, before the 101 (a crash once).
        return await raw_ws_case(port, path, chunks, client_closes=half_close == "close", coalesce=coalesce)

    def check(out):
        errs = ws_common_checks(out)
        if errs:
            return errs
        ends = [t for t in out.texts if "$end" in t]
        end = ends[0]["$end"]
        code = end.get("code") if isinstance(end, dict) else None
        if expect == "ok" and code != 0:
            errs.append(f"expected code 0, got $end {end}")
        if expect == "error" and code == 0:
            errs.append(f"garbage accepted: $end {end}, frames {out.texts[:3]}")
        if expect_code is not None and code != expect_code:
            errs.append(f"expected code {expect_code}, got $end {end}")
        if expect == "ok" and code == 0 and requests is not None:
            msgs = [t for t in out.texts if not any(k.startswith("$") for k in t)]
            want = expected_responses(method, requests) if (requests or method not in ("list", "sayhi")) else []
            if method == "sayhi":
                ok = len(msgs) == 1 and isinstance(msgs[0].get("result"), str) and \
                    msgs[0]["result"].startswith(f"hi {requests[0].get('name', '')}---")
                if not ok:
                    errs.append(f"SayHi answered {msgs} for {requests}")
            elif msgs != want:
                errs.append(f"wrong responses: got {short(msgs, 400)}, want {short(want, 400)}")
            pongs = [t["$pong"] for t in out.texts if "$pong" in t]
            if pongs != pongs_expected:
                errs.append(f"pongs {pongs} != {pongs_expected}")
        return errs

    return Case(index, f"ws.{family}", "ws-lib" if via_lib else "ws-raw", method, description, expect, run, check)


def ws_common_checks(out):
    errs = list(out.problems)
    if out.timed_out:
        errs.append("HANG: the session did not end within the timeout")
        return errs
    if out.status is None:
        return errs or ["no handshake"]
    if not out.status.startswith("HTTP/1.1 101"):
        return errs + [f"handshake refused: {out.status}"]
    ends = [t for t in out.texts if "$end" in t]
    if len(ends) != 1:
        errs.append(f"{len(ends)} $end frames (want exactly 1): {short(out.texts, 300)}, Close {out.close_code} "
                    f"{out.close_reason!r}, TCP closed {out.eof}" + (f", RESET: {out.reset}" if out.reset else ""))
        return errs
    if out.texts[-1] is not ends[0]:
        errs.append(f"frames after $end: {short(out.texts, 300)}")
    end = ends[0]["$end"]
    if not isinstance(end, dict) or not isinstance(end.get("code"), int):
        errs.append(f"$end is not a Status: {end}")
        return errs
    code = end["code"]
    if code != 0 and not isinstance(end.get("message"), str):
        errs.append(f"$end without a message: {end}")
    want_close = 1000 if code == 0 else 4000 + code
    if out.close_code != want_close:
        errs.append(f"Close {out.close_code} after $end {end} (want {want_close})")
    elif code != 0 and out.close_reason and out.close_reason not in end.get("message", ""):
        errs.append(f"Close reason {out.close_reason!r} is not part of the message {end.get('message')!r}")
    if not out.eof:
        errs.append("TCP not closed")
    return errs


VIOLATIONS = [
    "reserved_opcode", "rsv_bits", "unmasked", "continuation_without_start", "new_frame_inside_fragmented",
    "fragmented_control", "long_control", "length_msb", "declared_oversized", "fragments_oversized", "invalid_utf8",
]


def ws_protocol_case(rng, index, port_ref, max_bytes):
    """Frame-level cases: valid fragmentation (expect the right answer), violations, truncation."""
    method = rng.choice(["route", "data", "record", "list", "sayhi"])
    path = PATHS[method]
    k = rng.random()
    after, probe = "keep", False
    expect, requests, family = "violation", None, None
    chunks = []

    def msg():
        if method == "data":
            return json.dumps({"data": random_name(rng)}).encode()
        if method == "sayhi":
            return json.dumps({"name": random_name(rng)}).encode()
        return json.dumps(stream_request(rng)).encode()

    if k < 0.25:
        # Valid fragmentation, with pings/pongs interleaved: the server must reassemble exactly.
        family = "fragmented_valid"
        expect = "ok"
        requests = []
        pings = []
        n_msgs = 1 if method in ("list", "sayhi") else rng.randint(1, 3)
        for _ in range(n_msgs):
            m = msg()
            requests.append(json.loads(m))
            pieces = rng.randint(2, 6)
            cuts = sorted(rng.sample(range(1, len(m)), min(pieces - 1, len(m) - 1)))
            parts = [m[a:b] for a, b in zip([0] + cuts, cuts + [len(m)])]
            for i, p in enumerate(parts):
                chunks.append(ws_frame(1 if i == 0 else 0, p, fin=i == len(parts) - 1))
                if i < len(parts) - 1 and rng.random() < 0.5:
                    if rng.random() < 0.7:
                        payload = os.urandom(rng.randint(0, 125))
                        pings.append(payload)
                        chunks.append(ws_frame(9, payload))
                    else:
                        chunks.append(ws_frame(10, os.urandom(rng.randint(0, 20))))
        if method in STREAMING_IN:
            chunks.append(text('{"$end":true}'))
    elif k < 0.8:
        family = rng.choice(VIOLATIONS)
        prefix = []
        if rng.random() < 0.5 and method in STREAMING_IN:
            prefix = [text(msg())]  # the RPC is already running
        if family == "reserved_opcode":
            op = rng.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
            bad = ws_frame(op, os.urandom(rng.randint(0, 30)))
        elif family == "rsv_bits":
            bad = ws_frame(1, msg(), rsv=rng.choice([1, 2, 4, 3, 7]))
        elif family == "unmasked":
            bad = ws_frame(rng.choice([1, 1, 9]), msg(), mask=False)
        elif family == "continuation_without_start":
            bad = ws_frame(0, msg())
        elif family == "new_frame_inside_fragmented":
            m = msg()
            bad = ws_frame(1, m[:3], fin=False) + ws_frame(rng.choice([1, 2]), m[3:])
        elif family == "fragmented_control":
            bad = ws_frame(rng.choice([8, 9, 10]), b"ab", fin=False)
        elif family == "long_control":
            bad = ws_frame(rng.choice([8, 9, 10]), b"\x03\xe8" + b"x" * rng.randint(124, 300))
        elif family == "length_msb":
            bad = ws_frame(1, b"{}", msb=True)
        elif family == "declared_oversized":
            declared = rng.choice([max_bytes + 1, max_bytes * 4, 2**31, 2**40, 2**62])
            bad = ws_frame(1, b'{"pt":{"name":"' + b"x" * rng.randint(0, 100), declared=declared)
            expect = "oversized"
        elif family == "fragments_oversized":
            piece = b"x" * 8192
            bad = ws_frame(1, b'{"pt":{"name":"' + piece, fin=False)
            for _ in range(max_bytes // len(piece) + 1):
                bad += ws_frame(0, piece, fin=False)
            expect = "oversized"
        else:  # invalid UTF-8 in a text frame
            b = bytearray(msg())
            i = rng.randint(0, len(b))
            b[i:i] = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf", b"\xe2\x82"])
            bad = ws_frame(1, bytes(b))
            expect = "utf8"
        chunks = prefix + [bad]
        probe = expect == "violation"
    else:
        family = rng.choice(["truncated_fin", "truncated_rst", "close_inside_fragmented", "garbage_bytes_fin",
                             "invalid_close", "handshake_then_rst", "message_then_rst"])
        expect = "abandoned"
        if family in ("truncated_fin", "truncated_rst"):
            f = text(msg())
            chunks = [f[: rng.randint(1, len(f) - 1)]]
            after = "fin" if family == "truncated_fin" else "rst"
        elif family == "close_inside_fragmented":
            m = msg()
            chunks = [ws_frame(1, m[:4], fin=False), ws_frame(8, struct.pack("!H", 1000))]
        elif family == "garbage_bytes_fin":
            chunks = [os.urandom(rng.randint(1, 64))]
            after = "fin"
        elif family == "invalid_close":
            chunks = [ws_frame(8, rng.choice([b"\x03", struct.pack("!H", 999), struct.pack("!H", 1005),
                                              struct.pack("!H", 5000), b"\x03\xe8\xff\xfe"]))]
        elif family == "handshake_then_rst":
            after = "rst"
        else:
            chunks = [text(msg())]
            after = "rst"

    description = f"WS {path} {family}: bytes={short(b''.join(chunks), 300)} then {after}{' +probe ping' if probe else ''}"

    async def run():
        return await raw_ws_case(port_ref(), path, chunks, after=after, probe=probe,
                                 client_closes=family in ("close_inside_fragmented", "invalid_close"))

    def check(out):
        if expect == "ok":
            errs = ws_common_checks(out)
            if errs:
                return errs
            end = [t for t in out.texts if "$end" in t][0]["$end"]
            if end["code"] != 0:
                return [f"valid fragmented message refused: $end {end}"]
            msgs = [t for t in out.texts if not any(x.startswith("$") for x in t)]
            if method == "sayhi":
                if not (len(msgs) == 1 and msgs[0].get("result", "").startswith(f"hi {requests[0].get('name', '')}---")):
                    return [f"SayHi answered {msgs}"]
            elif msgs != expected_responses(method, requests):
                return [f"wrong responses {short(msgs, 300)} for {short(requests, 300)}"]
            return []
        errs = list(out.problems)
        if out.timed_out:
            return errs + ["HANG: the connection was not closed within the timeout"]
        if out.status and not out.status.startswith("HTTP/1.1 101"):
            return errs + [f"handshake refused: {out.status}"]
        ends = [t for t in out.texts if "$end" in t]
        if len(ends) > 1:
            errs.append(f"{len(ends)} $end frames")
        if ends and out.texts[-1] is not ends[-1]:
            errs.append("frames after $end")
        if expect == "abandoned":
            if after != "rst" and not out.eof:
                errs.append("the server kept the connection open")
            return errs
        if out.probe_answered and out.close_code is None:
            errs.append("violation ignored: the server answered a later ping and did not close")
            return errs
        if out.close_code is None and not out.eof:
            errs.append("no Close and no TCP close")
        code = ends[0]["$end"].get("code") if ends else None
        if ends and code == 0:
            errs.append(f"violation ended with code 0: {ends[0]}")
        if expect == "oversized":
            if not ((code == 8 and out.close_code == 4008) or (not ends and out.close_code == 1009)):
                errs.append(f"oversized frame: want $end 8 + Close 4008 (or Close 1009), got $end {ends} Close {out.close_code}")
        elif expect == "utf8":
            if not ((code == 3 and out.close_code == 4003) or (not ends and out.close_code == 1007)):
                errs.append(f"invalid UTF-8: want $end 3 + Close 4003 (or Close 1007), got $end {ends} Close {out.close_code}")
        else:
            if out.close_code is None:
                errs.append("connection ended without a Close frame")
            elif ends and out.close_code != 4000 + code:
                errs.append(f"Close {out.close_code} after $end code {code}")
            elif not ends and out.close_code not in (1002, 1003, 1007, 1008, 1009, 1011):
                errs.append(f"Close {out.close_code} without $end for a protocol violation")
        return errs

    def outcome_label(out):
        ends = [t for t in out.texts if "$end" in t]
        return f"$end {ends[0]['$end'].get('code')} + Close {out.close_code}" if ends else f"Close {out.close_code}, eof {out.eof}"

    case = Case(index, f"wsproto.{family}", "ws-raw", method, description, expect, run, check)
    case.label = outcome_label
    return case


def http_message_case(rng, index, port_ref, max_bytes):
    method = rng.choice(["sayhi", "sayhi", "route", "list", "record", "data"])
    path = PATHS[method]
    expect, family, requests, expect_code = "ok", "valid", None, None
    k = rng.random()
    ctype = rng.choice(["application/json", "application/json; charset=utf-8", "application/x-www-form-urlencoded", None])
    if method in ("route", "record", "data"):
        ctype = rng.choice(["application/x-ndjson", "application/json", None])
    if k < 0.3:
        requests = valid_requests(rng, method)
        if method in ("list", "sayhi"):
            body = dumps(requests[0], rng).encode()
        else:
            sep = rng.choice(["\n", "\r\n"])
            body = "".join(json.dumps(r) + sep for r in requests).encode()
            if body and rng.random() < 0.3:
                body = body.rstrip(b"\r\n")  # no newline after the last line
    elif k < 0.9:
        t, family, expect = garbage_message(rng, method)
        t = t if isinstance(t, bytes) else t.encode()
        if method in ("route", "record", "data"):
            good = [json.dumps(r).encode() for r in valid_requests(rng, method)]
            pos = rng.randint(0, len(good))
            if b"\n" in t:
                expect = "any" if expect != "ok" else "ok"
            lines = good[:pos] + [t] + good[pos:]
            body = b"\n".join(lines) + b"\n"
            if t.strip() == b"":
                expect = "any"  # an empty NDJSON line
        else:
            body = t
            if family == "not_object" and t.strip() == b"":
                expect, expect_code = "error", 3
    else:
        family = rng.choice(["oversized", "bad_content_type", "empty"])
        if family == "oversized":
            body = b'{"name":"' + b"x" * (max_bytes + rng.randint(1, 4096)) + b'"}'
            if method in ("route", "record", "data"):
                body = b'{"pt":{"name":"' + b"x" * (max_bytes + rng.randint(1, 4096)) + b'"}}\n'
            expect, expect_code = "error", 8
        elif family == "bad_content_type":
            ctype = rng.choice(["text/plain", "application/xml", "image/png", "multipart/form-data; boundary=x"])
            body = json.dumps(valid_requests(rng, method)[0] if method in ("list", "sayhi") else {}).encode()
            # text/plain is what a CORS "simple request" sends; the gateway accepts it as JSON.
            expect, expect_code = ("any", None) if ctype == "text/plain" else ("error", 3)
        else:
            body = b""
            expect = "error" if method in ("list", "sayhi") else "ok"
            requests = [] if expect == "ok" else None
    chunked = rng.random() < 0.2
    keep_alive = rng.random() < 0.2
    req = http_request(path, body, content_type=ctype, chunked=chunked, connection=None if keep_alive else "close")
    follow = http_request(PATHS["sayhi"], b'{"name":"again"}', connection="close") if keep_alive else None
    description = f"HTTP {short(req, 400)}"

    async def run():
        return await raw_http_case(port_ref(), [req], follow_up=follow)

    def check(out):
        errs = http_common_checks(out)
        if errs:
            return errs
        streaming_out = method in ("list", "route", "data")
        ok_status = out.status == 200
        lines = None
        if ok_status and streaming_out:
            lines, e = parse_ndjson(out)
            if e:
                return e
            end = lines[-1]["$end"]
            code = end.get("code")
        elif ok_status:
            code = 0
        else:
            code = json.loads(out.body)["code"]
        if expect == "ok" and code != 0:
            errs.append(f"expected success, got HTTP {out.status} {short(out.body, 300)}")
        if expect == "error" and code == 0:
            errs.append(f"garbage accepted: HTTP {out.status} {short(out.body, 300)}")
        if expect_code is not None and code != expect_code:
            errs.append(f"expected code {expect_code}, got HTTP {out.status} {short(out.body, 300)}")
        if expect == "ok" and code == 0 and requests is not None:
            if method == "sayhi":
                r = json.loads(out.body).get("result", "")
                if not r.startswith(f"hi {requests[0].get('name', '')}---"):
                    errs.append(f"SayHi answered {r!r} for {requests}")
            elif method == "record":
                if json.loads(out.body) != expected_responses(method, requests)[0]:
                    errs.append(f"Record answered {out.body!r}")
            else:
                msgs = lines[:-1]
                if msgs != expected_responses(method, requests):
                    errs.append(f"wrong responses {short(msgs, 300)} for {short(requests, 300)}")
        if follow is not None and out.second is not None and code == 0:
            # After an error the gateway may close the connection (a streamed answer cannot say
            # Connection: close any more); after a success it must serve the next request.
            st, body = out.second
            if st != 200:
                errs.append(f"keep-alive follow-up SayHi got {st} {short(body, 200)}")
        return errs

    return Case(index, f"http.{family}", "http", method, description, expect, run, check)


def parse_ndjson(out):
    ctype = out.headers.get("content-type", [""])[0]
    if not ctype.startswith("application/x-ndjson"):
        return None, [f"streaming 200 with Content-Type {ctype!r}"]
    try:
        lines = [json.loads(l) for l in out.body.decode().split("\n") if l.strip()]
    except (ValueError, UnicodeDecodeError):
        return None, [f"NDJSON body is not JSON lines: {short(out.body, 300)}"]
    ends = [l for l in lines if isinstance(l, dict) and "$end" in l]
    if len(ends) != 1 or lines[-1] is not ends[0]:
        return None, [f"NDJSON stream must end with exactly one $end line: {short(out.body, 300)}"]
    if not isinstance(ends[0]["$end"], dict) or not isinstance(ends[0]["$end"].get("code"), int):
        return None, [f"$end line is not a Status: {ends[0]}"]
    return lines, []


def response_problems(out):
    """What is wrong before any answer is read: a problem the exchange saw, no response within the
    timeout, or a connection closed without one."""
    errs = list(out.problems)
    if out.timed_out:
        return errs + ["HANG: no HTTP response within the timeout"]
    if out.status is None:
        return errs + ["the connection closed without an HTTP response"]
    return errs


def http_common_checks(out):
    if errs := response_problems(out):
        return errs
    if out.status != 200:
        ctype = out.headers.get("content-type", [""])[0]
        try:
            body = json.loads(out.body)
        except (ValueError, UnicodeDecodeError):
            return [f"HTTP {out.status} error body is not JSON (Content-Type {ctype!r}): {short(out.body, 200)}"]
        if not ctype.startswith("application/json"):
            errs.append(f"HTTP {out.status} error with Content-Type {ctype!r}")
        if not (isinstance(body, dict) and isinstance(body.get("code"), int) and isinstance(body.get("message"), str)):
            errs.append(f"HTTP {out.status} error body is not a Status: {short(out.body, 200)}")
        elif body["code"] == 0 or out.status not in HTTP_FOR_CODE.get(body["code"], set()):
            errs.append(f"HTTP {out.status} does not match gRPC code {body['code']}: {short(out.body, 200)}")
    return errs


def http_protocol_case(rng, index, port_ref, max_bytes):
    """Garbage at the HTTP/1.1 framing level: Content-Length, chunked encoding, request lines."""
    path = rng.choice([PATHS["sayhi"], PATHS["route"]])
    good = b'{"name":"p"}' if path == PATHS["sayhi"] else b'{"pt":{"value":1}}\n'
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n".encode()
    after = "keep"
    expect = "error"
    family = rng.choice(["bad_content_length", "conflicting_lengths", "short_body_fin", "long_body",
                         "chunk_size_garbage", "chunk_overflow", "chunk_missing_crlf", "chunk_truncated_fin",
                         "chunked_valid", "te_and_cl", "te_unknown", "request_line_garbage", "header_garbage",
                         "huge_header", "complete_then_fin", "http10", "method_garbage", "body_then_rst"])
    if family == "bad_content_length":
        cl = rng.choice(["abc", "-1", "1.5", "0x10", " ", "", "99999999999999999999999", "+5", "5, 6", "１２"])
        req = head + f"Content-Length: {cl}\r\n\r\n".encode("utf-8") + good
    elif family == "conflicting_lengths":
        req = head + f"Content-Length: {len(good)}\r\nContent-Length: {len(good) + 3}\r\n\r\n".encode() + good
    elif family == "short_body_fin":
        req = head + f"Content-Length: {len(good) + rng.randint(1, 1000)}\r\n\r\n".encode() + good
        after, expect = "fin", "abandoned"
    elif family == "long_body":
        req = head + f"Content-Length: {len(good)}\r\n\r\n".encode() + good + rng.choice([b"garbage", b"\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"])
        expect = "any"  # the first request is complete; the rest is a second (bad) request after Connection: close
    elif family == "chunk_size_garbage":
        req = head + b"Transfer-Encoding: chunked\r\n\r\n" + rng.choice([b"zz", b"-1", b"0x5", b" ", b"5 5"]) + b"\r\n" + good + b"\r\n0\r\n\r\n"
    elif family == "chunk_overflow":
        req = head + b"Transfer-Encoding: chunked\r\n\r\n" + rng.choice([b"ffffffffffffffffff", b"10000000000000000", b"-0", b"1" * 40]) + b"\r\n" + good + b"\r\n0\r\n\r\n"
    elif family == "chunk_missing_crlf":
        req = head + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(good) + good + b"XX0\r\n\r\n"
    elif family == "chunk_truncated_fin":
        req = head + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % (len(good) + 50) + good
        after, expect = "fin", "abandoned"
    elif family == "chunked_valid":
        req = http_request(path, good, chunked=True)
        expect = "ok"
    elif family == "te_and_cl":
        req = head + f"Transfer-Encoding: chunked\r\nContent-Length: {len(good)}\r\n\r\n".encode() + b"%x\r\n" % len(good) + good + b"\r\n0\r\n\r\n"
        expect = "any"  # RFC 9112 lets a server reject it or let chunked win
    elif family == "te_unknown":
        req = head + rng.choice([b"Transfer-Encoding: gzip\r\n\r\n", b"Transfer-Encoding: chunked, gzip\r\n\r\n",
                                 b"Transfer-Encoding: xchunked\r\n\r\n"]) + good
    elif family == "request_line_garbage":
        req = rng.choice([b"\x00\x01\x02\r\n\r\n", b"POST\r\n\r\n", b"POST " + path.encode() + b" HTTP/9.9\r\n\r\n",
                          b"POST " + path.encode() + b"\r\n\r\n", b"\xff\xfe\r\n\r\n", b"POST  HTTP/1.1\r\n\r\n",
                          b" " * 10 + b"\r\n\r\n", os.urandom(40) + b"\r\n\r\n"])
    elif family == "header_garbage":
        req = head + rng.choice([b"NoColon\r\n", b": novalue\r\n", b"Bad Header: x\r\n", b"X: \x00\r\n",
                                 b"X:\x7f\r\n", b" folded: x\r\n"]) + f"Content-Length: {len(good)}\r\n\r\n".encode() + good
    elif family == "huge_header":
        req = head + b"X-Big: " + b"a" * rng.choice([70_000, 200_000, 1_100_000]) + b"\r\n" + f"Content-Length: {len(good)}\r\n\r\n".encode() + good
        expect = "any"  # 431 is right, but a big header may also be accepted
    elif family == "complete_then_fin":
        # A FIN while the call runs is a hang-up (as nginx treats it): the RPC is cancelled, and
        # an answer may or may not have gone out first.
        req = head + f"Content-Length: {len(good)}\r\n\r\n".encode() + good
        after, expect = "fin", "abandoned"
    elif family == "http10":
        req = f"POST {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {len(good)}\r\n\r\n".encode() + good
        expect = "ok"
    elif family == "method_garbage":
        # (Not CONNECT: HTTP parsers treat what follows a CONNECT as a tunnel, the answer's body too.)
        req = rng.choice([b"FOO ", b"DELETE ", b"PATCH ", b"TRACE "]) + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    else:
        req = head + f"Content-Length: {len(good) + 100}\r\n\r\n".encode() + good
        after, expect = "rst", "abandoned"
    # Send in one or several writes.
    chunks = [req]
    if rng.random() < 0.3 and len(req) > 4:
        cut = rng.randint(1, len(req) - 1)
        chunks = [req[:cut], req[cut:]]
    description = f"HTTP {family}: {short(req, 400)} then {after}"

    async def run():
        return await raw_http_case(port_ref(), chunks, after=after)

    def check(out):
        if expect == "abandoned":
            # The client cut its request short: no answer, or an answer cut short, are both fine;
            # what is not is a server that keeps the connection open.
            if out.timed_out:
                return ["HANG: the server kept an abandoned connection open"]
            return []
        errs = http_common_checks(out)
        if errs:
            return errs
        if expect == "ok":
            if out.status != 200:
                errs.append(f"valid request answered HTTP {out.status} {short(out.body, 200)}")
            elif path == PATHS["route"]:
                lines, e = parse_ndjson(out)
                errs += e
                if lines and lines[-1]["$end"].get("code") != 0:
                    errs.append(f"$end {lines[-1]}")
        elif expect == "error" and out.status == 200:
            # A stream may answer the lines before the garbage (its responses go out as they are
            # made): then the error must be its `$end` line.
            lines, e = parse_ndjson(out) if path == PATHS["route"] else (None, None)
            if not (lines and not e and lines[-1].get("$end", {}).get("code", 0) != 0):
                errs.append(f"framing garbage accepted: HTTP 200 {short(out.body, 200)}")
        return errs

    return Case(index, f"httpproto.{family}", "http", path, description, expect, run, check)


GENERATORS = {
    "ws": ws_message_case,
    "wsproto": ws_protocol_case,
    "http": http_message_case,
    "httpproto": http_protocol_case,
}


def make_case(seed, index, kinds, port_ref, max_bytes):
    rng = random.Random(f"{seed}-{index}")
    kind = kinds[index % len(kinds)]
    return GENERATORS[kind](rng, index, port_ref, max_bytes)


# --- the runner --------------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.total = 0
        self.by_category = collections.Counter()
        self.failures = collections.defaultdict(list)   # category -> [(case, errors)]
        self.labels = collections.defaultdict(collections.Counter)  # category -> outcome label counts
        self.elapsed = 0.0
        self.slowest = []  # (seconds, index, category)

    def failed(self):
        return sum(len(v) for v in self.failures.values())

    def summary(self, limit=3):
        lines = [f"{self.total} cases in {self.elapsed:.1f} s ({self.total / max(self.elapsed, 1e-9):.0f} cases/s), "
                 f"{self.failed()} failed; slowest cases: "
                 + ", ".join(f"#{i} {c} {dt:.2f} s" for dt, i, c in self.slowest)]
        for cat in sorted(self.failures):
            fails = self.failures[cat]
            lines.append(f"  FAIL {cat}: {len(fails)} of {self.by_category[cat]}")
            seen, examples = set(), []
            for case, errs in fails:  # one example per kind of error first, then the rest
                kind = errs[0][:25]
                if kind not in seen:
                    seen.add(kind)
                    examples.append((case, errs))
            examples += [f for f in fails if f not in examples]
            for case, errs in examples[:max(limit, len(seen))]:
                lines.append(f"    case #{case.index} ({case.transport}): {'; '.join(errs)[:600]}")
                lines.append(f"      repro: {case.description[:700]}")
        return "\n".join(lines)

    def outcome_table(self):
        lines = []
        for cat in sorted(self.labels):
            lines.append(f"  {cat}: " + ", ".join(f"{k} x{v}" for k, v in self.labels[cat].most_common()))
        return "\n".join(lines)


async def run_cases(port, seed, count, kinds, concurrency=64, max_bytes=131072, only=None, alive=None,
                    progress=None):
    report = Report()
    sem = asyncio.Semaphore(concurrency)
    port_ref = lambda: port  # noqa: E731
    start = time.monotonic()
    indices = [only] if only is not None else range(count)

    async def one(i):
        async with sem:
            try:
                case = make_case(seed, i, kinds, port_ref, max_bytes)
            except Exception as e:  # a generator bug: count it, with the index to replay
                case = Case(i, f"{kinds[i % len(kinds)]}.generator", "-", "-", f"make_case({seed}, {i})", "-", None, None)
                report.total += 1
                report.by_category[case.category] += 1
                report.failures[case.category].append((case, [f"fuzzer exception {type(e).__name__}: {e}"]))
                return
            try:
                t = time.monotonic()
                out = await asyncio.wait_for(case.run(), DEFAULT_TIMEOUT * 3)
                errs = case.check(out)
                dt = time.monotonic() - t
                report.slowest = sorted(report.slowest + [(dt, case.index, case.category)], reverse=True)[:3]
                if dt > 5 and not errs:
                    errs = [f"SLOW: the case took {dt:.1f} s"]
            except asyncio.TimeoutError:
                errs = ["HANG: the case did not finish"]
                out = None
            except Exception as e:  # a bug in the fuzzer itself is a failure too, with its case
                errs = [f"fuzzer exception {type(e).__name__}: {e}"]
                out = None
            report.total += 1
            report.by_category[case.category] += 1
            if out is not None and hasattr(case, "label"):
                report.labels[case.category][case.label(out)] += 1
            if errs:
                report.failures[case.category].append((case, errs))
            if progress and report.total % progress == 0:
                el = time.monotonic() - start
                print(f"  {report.total} cases, {report.failed()} failed, {report.total / el:.0f} cases/s"
                      + (f", gateway alive: {alive()}" if alive else ""), flush=True)

    # Feed the semaphore gradually so 100,000 pending tasks are never created at once.
    pending = set()
    for i in indices:
        pending.add(asyncio.ensure_future(one(i)))
        if len(pending) >= concurrency * 4:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    if pending:
        await asyncio.wait(pending)
    report.elapsed = time.monotonic() - start
    return report


# --- health and the active-RPC gauge -----------------------------------------------------------


def http_get(port, path, timeout=10):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def active_rpcs(sluice, started=None):
    """The number of RPCs in flight: the sum of `sluice_rpcs_active` samples from GET /metrics.

    Falls back to the log (debug level: one `RPC finished` line per ended RPC) only when /metrics
    answers 404; the log has no start line, so the caller must then say how many RPCs it started
    (`started`: a number, or a dict method -> number, e.g. {"proto.StreamService/List": 1000}).
    Returns None when neither source can tell."""
    status, body = http_get(sluice.http_port, "/metrics")
    if status == 200:
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith("sluice_rpcs_active"):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)
    assert status == 404, f"GET /metrics answered {status}: {body[:200]!r}"
    if started is None:
        return None
    finished = sluice.log_lines("RPC finished")
    if isinstance(started, dict):
        return sum(n - sum(1 for l in finished if f"sluice.rpc.method={m} " in l or l.rstrip().endswith(f"sluice.rpc.method={m}"))
                   for m, n in started.items())
    return started - len(finished)


def wait_for_no_active_rpcs(sluice, started=None, timeout=15):
    deadline = time.monotonic() + timeout
    n = active_rpcs(sluice, started)
    while n and time.monotonic() < deadline:
        time.sleep(0.1)
        n = active_rpcs(sluice, started)
    return n


async def list_over_ws(port, value=10):
    out = await lib_ws_case(port, PATHS["list"], [json.dumps({"pt": {"name": "health", "value": value}})], timeout=30)
    return out


def say_hi_over_http(port):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", PATHS["sayhi"], body=b'{"name":"health"}', headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def check_health(sluice, list_count=LIST_COUNT):
    """The gateway still serves: a List over WebSocket and a SayHi over HTTP. Returns problems."""
    problems = []
    if sluice.process.poll() is not None:
        return [f"the gateway died with exit code {sluice.process.returncode}"]
    out = asyncio.run(list_over_ws(sluice.http_port))
    want = [{"pt": {"name": "health", "value": 10 + n}} for n in range(list_count)] + [{"$end": {"code": 0}}]
    if out.texts != want or out.close_code != 1000:
        problems.append(f"List over WS after the run: {out.texts} Close {out.close_code} {out.problems}")
    status, body = say_hi_over_http(sluice.http_port)
    if status != 200 or not json.loads(body).get("result", "").startswith("hi health---"):
        problems.append(f"SayHi over HTTP after the run: {status} {body[:200]!r}")
    return problems


def raise_nofile(n=20000):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, n), hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

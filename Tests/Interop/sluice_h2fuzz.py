"""The live-gateway fuzzer's native-port family: raw HTTP/2 connections to the gRPC port (issue 13).

Each case is one TCP connection driven with the `h2` library (its own header validation off, so
that it sends what a broken or hostile client would): random and malformed request headers
(`grpc-timeout`, `content-type`, `te`, `grpc-encoding`, pseudo-headers, `-bin` metadata, the
gateway's own keys), gRPC length prefixes that lie, the compressed flag with no encoding, garbage
protobuf, too many or too few messages, RST floods and garbage frames. Cases are generated from
`random.Random(f"{seed}-{index}")` like the other families, so one replays alone.

Expectations:
- "ok": a valid call; the exact answer is checked (SayHi's greeting, List's values, Route's count).
- "any": every stream the case opened ends (END_STREAM, RST_STREAM or GOAWAY) within the timeout,
  a 200 answer that ends carries `grpc-status`, and a `grpc-status` is a number from 0 to 16.
- "abandoned": the client resets or drops the connection; nothing is required of the answer.
The process must stay alive and serve normal calls afterwards (checked by test_fuzz.py).
"""
import asyncio
import random
import struct

import h2.config
import h2.connection
import h2.events
import h2.exceptions

import sluice_fuzz as fz

TIMEOUT = 10.0
METHODS = {
    "sayhi": "/hello.UserService/SayHi",
    "list": "/proto.StreamService/List",
    "route": "/proto.StreamService/Route",
    "record": "/proto.StreamService/Record",
}


def varint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def string_field(number, text):
    data = text.encode()
    return varint(number << 3 | 2) + varint(len(data)) + data


def stream_request(name, value):
    point = string_field(1, name) + varint(2 << 3) + varint(value & 0xFFFFFFFFFFFFFFFF)
    return varint(1 << 3 | 2) + varint(len(point)) + point


def grpc_frame(message, compressed=0, declared=None):
    return bytes([compressed]) + struct.pack("!I", len(message) if declared is None else declared) + message


def decode_fields(data):
    """A protobuf message's (number, value) pairs: bytes for length-delimited, int for varints."""
    fields, i = [], 0
    while i < len(data):
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(data, i)
        elif wire == 2:
            n, i = read_varint(data, i)
            value, i = data[i:i + n], i + n
        else:
            raise ValueError(f"wire type {wire}")
        fields.append((number, value))
    return fields


def read_varint(data, i):
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i


def messages(body):
    out, i = [], 0
    while i + 5 <= len(body):
        n = struct.unpack("!I", body[i + 1:i + 5])[0]
        out.append(body[i + 5:i + 5 + n])
        i += 5 + n
    return out


class Stream:
    def __init__(self):
        self.headers = None
        self.trailers = None
        self.body = b""
        self.ended = False
        self.reset = None


class Outcome:
    def __init__(self):
        self.streams = {}
        self.goaway = None
        self.eof = False
        self.timed_out = False
        self.half_closed = False  # we sent FIN: nothing more may be written
        self.problems = []


GARBAGE_TIMEOUTS = ["-1S", "-0S", "0S", "1", "S", "1X", "99999999H", "123456789n", "1.5S", "1e3m", " 1S", "1S ",
                    "+1S", "0x10S", "١S", "9" * 40 + "S", "", "-", "1s", "1Sm", "\u00ffS"]
CONTENT_TYPES = ["application/grpc", "application/grpc+proto", "application/grpc+json", "application/grpcx", "text/plain",
                 "application/json", "", "APPLICATION/GRPC", "application/grpc; charset=utf-8"]
ENCODINGS = ["gzip", "deflate", "identity", "br", "gzip,identity", "", "x" * 300, "identity, gzip"]


def base_headers(path, rng=None):
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
            ("content-type", "application/grpc"), ("te", "trailers")]


def mutate_headers(rng, headers):
    """One to three random breakages of a request's headers; returns (headers, what was done)."""
    done = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["timeout", "content-type", "te", "encoding", "accept-encoding", "method", "path", "scheme",
                           "authority", "drop-pseudo", "dup-pseudo", "uppercase", "bin", "huge", "gateway-key",
                           "user-agent", "order"])
        done.append(kind)
        if kind == "timeout":
            amount = rng.choice([rng.randint(-9_999_999, 99_999_999), rng.randint(-10**12, 10**12), -1])
            value = rng.choice(GARBAGE_TIMEOUTS + [f"{amount}{rng.choice('HMSmunx')}"] * 3)
            headers.append(("grpc-timeout", value))
        elif kind == "content-type":
            headers = [h for h in headers if h[0] != "content-type"]
            if rng.random() < 0.8:
                headers.append(("content-type", rng.choice(CONTENT_TYPES)))
        elif kind == "te":
            headers = [h for h in headers if h[0] != "te"]
            if rng.random() < 0.5:
                headers.append(("te", rng.choice(["gzip", "trailers, deflate", "", "TRAILERS"])))
        elif kind == "encoding":
            headers.append(("grpc-encoding", rng.choice(ENCODINGS)))
        elif kind == "accept-encoding":
            headers.append(("grpc-accept-encoding", rng.choice(ENCODINGS)))
        elif kind == "method":
            headers = [h if h[0] != ":method" else (":method", rng.choice(["GET", "PUT", "CONNECT", "post", "", "PRI"]))
                       for h in headers]
        elif kind == "path":
            path = rng.choice(["/", "//", "/a", "/hello.UserService", "/hello.UserService/", "/x.Y/Z", "*", "",
                               "/hello.UserService/SayHi/extra", "/" + "a" * rng.randint(100, 8000),
                               "/héllo.Ü/ß", "/hello.UserService/SayHi?x=1", "/%2e%2e/SayHi"])
            headers = [h if h[0] != ":path" else (":path", path) for h in headers]
        elif kind == "scheme":
            headers = [h if h[0] != ":scheme" else (":scheme", rng.choice(["https", "ftp", "", "HTTP"])) for h in headers]
        elif kind == "authority":
            headers = [h if h[0] != ":authority" else (":authority", rng.choice(["", "x" * 5000, "[::1", "a b"]))
                       for h in headers]
        elif kind == "drop-pseudo":
            name = rng.choice([":method", ":scheme", ":path", ":authority"])
            headers = [h for h in headers if h[0] != name]
        elif kind == "dup-pseudo":
            name = rng.choice([":method", ":scheme", ":path"])
            headers.append(next(h for h in base_headers("/x.Y/Z") if h[0] == name))
        elif kind == "uppercase":
            headers.append(("X-Upper", "v"))
        elif kind == "bin":
            headers.append((rng.choice(["x-data-bin", "grpc-status-details-bin", "x-bin"]),
                            rng.choice(["!!!", "AA=A", "YQ", "YQ==", "=", "a" * 4001, "\x00"])))
        elif kind == "huge":
            headers.append(("x-huge", "v" * rng.choice([1000, 8000, 15000, 70000])))
        elif kind == "gateway-key":
            headers.append((rng.choice(["sluice-rpc-id", "sluice-transport"]), rng.choice(["x", "http", "websocket"])))
        elif kind == "user-agent":
            headers.append(("user-agent", rng.choice(["", "grpc-go/1.0", "\x7f", "a" * 3000])))
        elif kind == "order":
            headers.insert(0, headers.pop())  # a regular header before the pseudo-headers
    return headers, done


def body_for(rng, method):
    if method == "sayhi":
        return grpc_frame(string_field(1, fz.random_name(rng)))
    return grpc_frame(stream_request(fz.random_name(rng), fz.random_int32(rng)))


def mutate_body(rng, method):
    """A request body that lies or breaks the framing; returns (bytes, what was done)."""
    kind = rng.choice(["long-prefix", "short-prefix", "huge-prefix", "compressed", "flag", "truncated-prefix",
                       "garbage", "two-messages", "empty", "zero-length"])
    message = string_field(1, "x") if method == "sayhi" else stream_request("x", 1)
    if kind == "long-prefix":
        data = grpc_frame(message, declared=len(message) + rng.randint(1, 1000))
    elif kind == "short-prefix":
        data = grpc_frame(message, declared=max(0, len(message) - rng.randint(1, len(message))))
    elif kind == "huge-prefix":
        data = grpc_frame(message, declared=rng.choice([4 << 20, (4 << 20) + 1, 0x7FFFFFFF, 0xFFFFFFFF]))
    elif kind == "compressed":
        data = grpc_frame(message, compressed=1)
    elif kind == "flag":
        data = grpc_frame(message, compressed=rng.randint(2, 255))
    elif kind == "truncated-prefix":
        data = grpc_frame(message)[:rng.randint(1, 4)]
    elif kind == "garbage":
        data = grpc_frame(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))))
    elif kind == "two-messages":
        data = grpc_frame(message) * 2
    elif kind == "empty":
        data = b""
    else:
        data = grpc_frame(b"")
    return data, kind


async def exchange(port, plan, abandon=None):
    """Runs one connection: `plan(conn, out, writer)` sends; reads until every opened stream has
    ended, the connection closed, or TIMEOUT. `abandon`: "rst" or "fin" cut the connection after
    sending; "fin-then-read" half-closes it and reads on."""
    out = Outcome()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        out.problems.append(f"connect failed: {e}")
        return out
    config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                       normalize_outbound_headers=False, validate_inbound_headers=False,
                                       header_encoding=None)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    try:
        plan(conn, out, writer)
        writer.write(conn.data_to_send())
        await writer.drain()
        if abandon == "fin-then-read":
            # Our side is done (its last bytes may be a frame cut short): the server must end
            # every stream or close once it sees the end of the connection.
            writer.write_eof()
            out.half_closed = True
        elif abandon:
            if abandon == "fin":
                writer.write_eof()
            else:
                writer.transport.abort()
            out.eof = True
            return out
        await asyncio.wait_for(read_until_done(reader, writer, conn, out), TIMEOUT)
    except asyncio.TimeoutError:
        out.timed_out = True
    except (ConnectionError, h2.exceptions.ProtocolError) as e:
        out.eof = True
        if isinstance(e, h2.exceptions.ProtocolError):
            out.goaway = out.goaway or f"h2 refused the server's frames after a close: {e}"
    finally:
        writer.transport.abort()
    return out


async def read_until_done(reader, writer, conn, out):
    while not all(s.ended or s.reset is not None for s in out.streams.values()) and out.goaway is None:
        data = await reader.read(65536)
        if not data:
            out.eof = True
            return
        for event in conn.receive_data(data):
            stream = out.streams.get(getattr(event, "stream_id", None))
            if isinstance(event, h2.events.ResponseReceived) and stream:
                stream.headers = dict((k.decode(), v.decode(errors="replace")) for k, v in event.headers)
            elif isinstance(event, h2.events.TrailersReceived) and stream:
                stream.trailers = dict((k.decode(), v.decode(errors="replace")) for k, v in event.headers)
            elif isinstance(event, h2.events.DataReceived) and stream:
                stream.body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and stream:
                stream.ended = True
            elif isinstance(event, h2.events.StreamReset) and stream:
                stream.reset = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                out.goaway = f"GOAWAY {event.error_code}"
        pending = conn.data_to_send()
        if pending and not out.half_closed:
            writer.write(pending)
            await writer.drain()


def status_of(stream):
    """The stream's grpc-status (trailers, or headers for trailers-only), or None."""
    for block in (stream.trailers, stream.headers):
        if block and "grpc-status" in block:
            return block["grpc-status"]
    return None


def any_checks(out):
    """The invariants every case keeps: each stream ended one way or another, with a gRPC status
    when it was answered 200 to the end."""
    errs = list(out.problems)
    if out.timed_out:
        errs.append("HANG: a stream neither ended nor was reset within the timeout")
    for sid, s in out.streams.items():
        if not (s.ended or s.reset is not None or out.goaway or out.eof):
            errs.append(f"stream {sid} did not end")
        if s.ended and s.headers and s.headers.get(":status") == "200":
            code = status_of(s)
            if code is None:
                errs.append(f"stream {sid}: a 200 answer ended without grpc-status: {s.headers} {s.trailers}")
            elif not code.isdigit() or not 0 <= int(code) <= 16:
                errs.append(f"stream {sid}: grpc-status {code!r}")
    return errs


def grpc_case(rng, index, port_ref, max_bytes):
    kind = rng.choices(["valid", "headers", "body", "reset", "flood", "garbage", "abandon"],
                       weights=[20, 35, 25, 6, 4, 5, 5])[0]
    method = rng.choice(list(METHODS))
    path = METHODS[method]
    description = [f"{kind} {path}"]

    if kind == "valid":
        name, value = fz.random_name(rng), fz.random_int32(rng)
        count = rng.randint(0, 5)
        if method == "sayhi":
            payload = grpc_frame(string_field(1, name))
        elif method == "list":
            payload = grpc_frame(stream_request(name, value))
        else:
            payload = b"".join(grpc_frame(stream_request(name, value + n)) for n in range(count))
        timeout = rng.choice([None, "30S", "30000m", "1M"])

        def plan(conn, out, writer):
            headers = base_headers(path) + ([("grpc-timeout", timeout)] if timeout else [])
            conn.send_headers(1, headers)
            conn.send_data(1, payload, end_stream=True)
            out.streams[1] = Stream()

        def check(out):
            errs = any_checks(out)
            s = out.streams.get(1)
            if errs or s is None:
                return errs
            if status_of(s) != "0":
                return [f"valid call answered grpc-status {status_of(s)}: {s.headers} {s.trailers}"]
            replies = [decode_fields(m) for m in messages(s.body)]
            if method == "sayhi":
                text = replies[0][0][1].decode() if replies and replies[0] else ""
                if not text.startswith(f"hi {name}---"):
                    return [f"SayHi answered {text!r}"]
            elif method == "list":
                got = [dict(decode_fields(dict(r)[1])).get(2, 0) for r in replies]
                want = [(value + n) & 0xFFFFFFFF for n in range(fz.LIST_COUNT)]
                if [g & 0xFFFFFFFF for g in got] != want:
                    return [f"List answered values {got}, expected {want}"]
            elif method == "route":
                got = [dict(decode_fields(dict(r)[1])).get(2, 0) for r in replies]
                if got != list(range(count)):
                    return [f"Route answered {got} to {count} messages"]
            elif method == "record":
                if len(replies) != 1:
                    return [f"Record answered {len(replies)} messages"]
            return []
        description.append(f"name={name!r} value={value} count={count} timeout={timeout}")
        return fz.Case(index, "grpc.valid", "grpc", method, " ".join(description), "ok",
                       lambda: exchange(port_ref(), plan), check)

    if kind in ("headers", "body"):
        headers, done = (mutate_headers(rng, base_headers(path)) if kind == "headers" else (base_headers(path), []))
        body, body_kind = mutate_body(rng, method) if kind == "body" else (body_for(rng, method), None)
        end = rng.random() < 0.9 or method == "sayhi"
        description.append(f"headers={fz.short(headers, 400)} breakages={done} body={fz.short(body)} "
                           f"body_kind={body_kind} end_stream={end}")

        def plan(conn, out, writer):
            conn.send_headers(1, headers, end_stream=not body and end)
            if body or not end:
                conn.send_data(1, body, end_stream=end)
            out.streams[1] = Stream()
            if not end:
                # A stream the client never half-closes: a bidi call waits for more, so reset it
                # ourselves after sending, as a vanishing client does.
                conn.reset_stream(1)
                out.streams[1].reset = "client"
        return fz.Case(index, f"grpc.{kind}", "grpc", method, " ".join(description), "any",
                       lambda: exchange(port_ref(), plan), any_checks)

    if kind in ("reset", "flood"):
        count = rng.randint(1, 8) if kind == "reset" else rng.randint(50, 400)
        description.append(f"streams={count}")

        def plan(conn, out, writer):
            for n in range(count):
                sid = 1 + 2 * n
                conn.send_headers(sid, base_headers(path))
                if rng.random() < 0.5:
                    conn.send_data(sid, body_for(rng, method))
                conn.reset_stream(sid, error_code=rng.choice([0, 8, 2]))
            if kind == "reset":  # then one normal call on the same connection
                sid = 1 + 2 * count
                conn.send_headers(sid, base_headers(METHODS["sayhi"]))
                conn.send_data(sid, grpc_frame(string_field(1, "after")), end_stream=True)
                out.streams[sid] = Stream()

        def check(out):
            errs = any_checks(out)
            if errs or kind == "flood":
                return errs
            s = next(iter(out.streams.values()))
            if not out.goaway and status_of(s) != "0":
                return [f"the call after the resets answered {status_of(s)}"]
            return []
        return fz.Case(index, f"grpc.{kind}", "grpc", method, " ".join(description), "any",
                       lambda: exchange(port_ref(), plan), check)

    if kind == "garbage":
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
        description.append(f"frames={fz.short(junk)}")

        def plan(conn, out, writer):
            conn.send_headers(1, base_headers(path))
            out.streams[1] = Stream()
            writer.write(conn.data_to_send() + junk)
        # Garbage may start a frame that never completes; like grpc-go, the server then waits
        # for the rest, so the case half-closes its side and expects the connection to end.
        return fz.Case(index, "grpc.garbage", "grpc", method, " ".join(description), "any",
                       lambda: exchange(port_ref(), plan, abandon="fin-then-read"), any_checks)

    how = rng.choice(["rst", "fin"])
    cut = rng.randint(0, 12)
    description.append(f"abandon={how} after {cut} bytes of the body")

    def plan(conn, out, writer):
        conn.send_headers(1, base_headers(path))
        conn.send_data(1, body_for(rng, method)[:cut])
    return fz.Case(index, "grpc.abandon", "grpc", method, " ".join(description), "abandoned",
                   lambda: exchange(port_ref(), plan, abandon=how), lambda out: list(out.problems))


fz.GENERATORS["grpc"] = grpc_case


async def say_hi(port):
    """One normal native call; returns the problems (none when it answered correctly)."""
    def plan(conn, out, writer):
        conn.send_headers(1, base_headers(METHODS["sayhi"]))
        conn.send_data(1, grpc_frame(string_field(1, "health")), end_stream=True)
        out.streams[1] = Stream()
    out = await exchange(port, plan)
    s = out.streams[1]
    replies = messages(s.body)
    if status_of(s) != "0" or not replies or not decode_fields(replies[0])[0][1].startswith(b"hi health---"):
        return [f"SayHi over the native port after the run: {s.headers} {s.trailers} {s.body[:100]!r} {out.problems}"]
    return []

"""The gRPC-Web and Connect family of the live-gateway fuzzer (sluice_fuzz.py registers it as "web").

Each case is one HTTP/1.1 request to the HTTP port, built from a valid gRPC-Web or Connect call to
SayHi, List or Record and then (most of the time) broken: lying and huge length prefixes, frames
cut short, a trailer frame or an end-stream envelope from the client, bad flags, base64 that is not,
gzip that is not, JSON that is not, a bad timeout, a wrong HTTP method or codec, a body cut short
then FIN or RST. Invariants, whatever the case:

- an HTTP/1.1 response within the timeout (never a hang, never a closed connection with nothing);
- gRPC-Web: 200 (405 or 415 only for a wrong method or codec) with the status either in the head
  (trailers-only, no body) or in exactly one trailer frame, last, after well-formed message frames
  (base64 when the response is text);
- Connect unary: 200 with the message, or the error JSON (`code` a Connect code name, `message`)
  with the HTTP status Connect's table gives that code; Connect streaming: 200 with envelopes, the
  last one flagged end-stream holding JSON (415 for a wrong codec);
- "ok" cases end OK with the expected messages, "error" cases end with an error, "any" cases with
  either; "abandoned" cases only must not keep the connection open.

The "webh2" family sends the same cases over HTTP/2 (h2c, the `h2` library) to the native port, one
connection and stream each: the request's headers in one HEADERS frame, its body in one or two
DATA frames; a body cut short is followed by a half-closed connection ("fin": every stream must
still end, or the connection close) or a dropped one ("rst").
"""
import base64
import gzip
import json
import struct

import sluice_fuzz as fz
import sluice_h2fuzz as h2fz

CONNECT_CODES = {
    "canceled": 1, "unknown": 2, "invalid_argument": 3, "deadline_exceeded": 4, "not_found": 5,
    "already_exists": 6, "permission_denied": 7, "resource_exhausted": 8, "failed_precondition": 9,
    "aborted": 10, "out_of_range": 11, "unimplemented": 12, "internal": 13, "unavailable": 14, "data_loss": 15,
    "unauthenticated": 16,
}


def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def say_hi(name):
    return field(1, name.encode())


def stream_request(name, value):
    point = field(1, name.encode()) + (varint(2 << 3) + varint(value & 0xFFFFFFFF) if value else b"")
    return field(1, point)


def envelope(payload, flags=0, declared=None):
    return struct.pack(">BI", flags, len(payload) if declared is None else declared) + payload


def frames_of(body):
    """[(flags, payload)] of an enveloped body, or an error string."""
    frames, offset = [], 0
    while offset < len(body):
        if len(body) - offset < 5:
            return f"{len(body) - offset} stray bytes after the last frame"
        flags, length = struct.unpack(">BI", body[offset:offset + 5])
        if len(body) - offset - 5 < length:
            return f"a frame of {length} bytes cut short"
        frames.append((flags, body[offset + 5:offset + 5 + length]))
        offset += 5 + length
    return frames


def decode_text(text):
    decoded, segment = b"", b""
    for index in range(0, len(text), 4):
        group = text[index:index + 4]
        segment += group
        if group.endswith(b"=") or index + 4 >= len(text):
            decoded += base64.b64decode(segment, validate=True)
            segment = b""
    return decoded


def web_case(rng, index, port_ref, max_bytes, h2=False):
    protocol = rng.choice(["grpc-web", "connect"])
    method = rng.choice(["sayhi", "list", "record"])
    path = fz.PATHS[method]
    json_codec = rng.random() < 0.3
    text = protocol == "grpc-web" and rng.random() < 0.3
    name = "".join(rng.choice("abcxyz") for _ in range(rng.randint(0, 8)))
    value = rng.randint(0, 1000)
    if method == "sayhi":
        messages = [json.dumps({"name": name}).encode() if json_codec else say_hi(name)]
    else:
        count = 1 if method == "list" else rng.randint(0, 4)
        messages = [json.dumps({"pt": {"name": name, "value": value}}).encode() if json_codec
                    else stream_request(name, value) for _ in range(count)]
    unary_connect = protocol == "connect" and method == "sayhi" and rng.random() < 0.6
    headers = {}
    if protocol == "grpc-web":
        content_type = "application/grpc-web" + ("-text" if text else "") + ("+json" if json_codec else "+proto")
    elif unary_connect:
        content_type = "application/json" if json_codec else "application/proto"
        headers["Connect-Protocol-Version"] = "1"
    else:
        content_type = "application/connect+" + ("json" if json_codec else "proto")
    http_method = "POST"
    after, expect = "keep", "ok"
    family = rng.choice(["valid", "valid", "lying_short", "lying_long", "huge_length", "trailer_flag", "bad_flags",
                         "gzip_garbage", "json_garbage", "random_payload", "bad_timeout", "wrong_method",
                         "unknown_codec", "cut_fin", "cut_rst", "extra_message", "bad_base64"])
    body_frames = [envelope(m) for m in messages]
    body = None
    if family == "lying_short" and not unary_connect and body_frames:
        m = messages[-1]
        body_frames[-1] = envelope(m, declared=len(m) + rng.randint(1, 50))
        expect = "error"
    elif family == "lying_long" and not unary_connect and body_frames and len(messages[-1]) > 1:
        m = messages[-1]
        body_frames[-1] = envelope(m, declared=rng.randint(0, len(m) - 1))
        expect = "any"  # the rest is read as another frame: garbage, or a frame cut short
    elif family == "huge_length" and not unary_connect:
        body_frames.append(struct.pack(">BI", 0, rng.choice([max_bytes + 1, 1 << 30, 0xFFFFFFFF])))
        expect = "error"
    elif family == "trailer_flag" and not unary_connect:
        flag = 0x80 if protocol == "grpc-web" else 0x02
        body_frames.append(envelope(say_hi("t"), flags=flag))
        expect = "error"
    elif family == "bad_flags" and not unary_connect and body_frames:
        flag = rng.choice([0x01, 0x03, 0x04, 0x40, 0xFF])
        body_frames[0] = envelope(messages[0], flags=flag)
        # gRPC-Web reads bit 0 (compressed, without an encoding: an error) and bit 7 (trailers);
        # Connect allows only 0x01 (compressed, without an encoding: an error).
        expect = "any" if protocol == "grpc-web" and flag in (0x04, 0x40) else "error"
    elif family == "gzip_garbage":
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        if rng.random() < 0.5 and messages:
            junk = gzip.compress(messages[0])[: rng.randint(0, 15)]  # a gzip stream cut short
        if protocol == "grpc-web":
            headers["grpc-encoding"] = "gzip"
            body_frames = [envelope(junk, flags=1)]
        elif unary_connect:
            headers["Content-Encoding"] = "gzip"
            body = junk
        else:
            headers["Connect-Content-Encoding"] = "gzip"
            body_frames = [envelope(junk, flags=1)]
        expect = "error"
    elif family == "json_garbage" and json_codec:
        garbage = rng.choice([b"{", b"[]", b"1", b'{"nope":1}', b'{"name":', b"\xff\xfe", b'{"pt":"x"}'])
        body_frames = [envelope(garbage)]
        body = garbage if unary_connect else None
        expect = "error"
    elif family == "random_payload":
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        body_frames = [envelope(junk)]
        body = junk if unary_connect else None
        expect = "any"
    elif family == "bad_timeout":
        if protocol == "grpc-web":
            headers["grpc-timeout"] = rng.choice(["x", "-1S", "1", "99999999999S", "1.5S", "1Z"])
        else:
            headers["Connect-Timeout-Ms"] = rng.choice(["x", "-1", "1.5", "12345678901", "5s"])
        expect = "error"
    elif family == "wrong_method":
        http_method = rng.choice(["PUT", "DELETE", "PATCH"])
        expect = "refused"
    elif family == "unknown_codec" and not unary_connect:
        content_type = rng.choice(["application/grpc-web+thrift", "application/connect+thrift"])
        protocol = "grpc-web" if "grpc-web" in content_type else "connect"
        expect = "refused"
    elif family == "extra_message" and method != "record" and not unary_connect:
        body_frames.append(body_frames[0] if body_frames else envelope(b""))
        expect = "error"
    elif family == "bad_base64" and text:
        family = "bad_base64"
    elif family in ("cut_fin", "cut_rst"):
        after, expect = ("fin" if family == "cut_fin" else "rst"), "abandoned"
    else:
        family = "valid"
    if body is None:
        body = messages[0] if unary_connect else b"".join(body_frames)
    if method == "list" and family in ("huge_length", "trailer_flag", "extra_message"):
        # List answers (and ends OK) on its one message: what follows it may never be read, as on
        # the native port.
        expect = "any"
    if text:
        body = base64.b64encode(body)
        if family == "bad_base64":
            at = rng.randint(0, len(body))
            body = body[:at] + rng.choice([b"!", b"*", b"\x00", b"~", b"A!A"]) + body[at:]
            # List may have its message, answer and end before the byte that is not base64.
            expect = "any" if method == "list" else "error"
    if h2:
        run, description = h2_run(rng, port_ref, path, http_method, content_type, headers, body, after)
        description = f"h2 {protocol} {family}: {description}"
    else:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = fz.http_request(path, body, method=http_method, content_type=content_type, extra_headers=extra)
        if after in ("fin", "rst"):
            request = request[: rng.randint(len(request) - len(body), max(len(request) - len(body), len(request) - 1))]
        chunks = [request]
        if rng.random() < 0.3 and len(request) > 4:
            cut = rng.randint(1, len(request) - 1)
            chunks = [request[:cut], request[cut:]]
        description = f"{protocol} {family}: {fz.short(request, 400)} then {after}"

        async def run():
            return await fz.raw_http_case(port_ref(), chunks, after=after)

    def check(out):
        if expect == "abandoned":
            return ["HANG: the server kept an abandoned connection open"] if out.timed_out else []
        if errs := fz.response_problems(out):
            return errs
        if expect == "refused":
            return [] if out.status in (405, 415) else [f"a wrong method or codec answered HTTP {out.status}"]
        if protocol == "grpc-web":
            code, got, errs = grpc_web_outcome(out)
        elif unary_connect:
            code, got, errs = connect_unary_outcome(out, json_codec)
        else:
            code, got, errs = connect_stream_outcome(out)
        if errs:
            return errs
        if expect == "ok":
            if code != 0:
                return [f"a valid call ended with code {code}"]
            wanted = {"sayhi": 1, "list": fz.LIST_COUNT, "record": 1}[method]
            if len(got) != wanted:
                return [f"{len(got)} response messages, not {wanted}"]
        if expect == "error" and code == 0:
            return [f"{family} ended OK with {len(got)} messages"]
        return []

    def grpc_web_outcome(out):
        if out.status != 200:
            return None, [], [f"gRPC-Web answered HTTP {out.status}"]
        if "grpc-status" in out.headers:
            if out.body:
                return None, [], ["a trailers-only answer with a body"]
            return int(out.headers["grpc-status"][0]), [], []
        raw = out.body
        if out.headers.get("content-type", [""])[0].startswith("application/grpc-web-text"):
            try:
                raw = decode_text(raw)
            except ValueError as e:
                return None, [], [f"the text response is not base64: {e}"]
        frames = frames_of(raw)
        if isinstance(frames, str):
            return None, [], [frames]
        trailers = [i for i, (flags, _) in enumerate(frames) if flags & 0x80]
        if trailers != [len(frames) - 1]:
            return None, [], [f"trailer frames at {trailers} of {len(frames)}"]
        fields = dict(line.split(": ", 1) for line in frames[-1][1].decode("latin-1").split("\r\n") if line)
        if not fields.get("grpc-status", "").isdigit():
            return None, [], [f"a trailer frame without grpc-status: {frames[-1][1]!r}"]
        return int(fields["grpc-status"]), frames[:-1], []

    def connect_unary_outcome(out, json_codec):
        if out.status == 200:
            return 0, [out.body], []
        try:
            error = json.loads(out.body)
        except ValueError:
            return None, [], [f"HTTP {out.status} with a body that is not JSON: {fz.short(out.body, 200)}"]
        code = CONNECT_CODES.get(error.get("code")) if isinstance(error, dict) else None
        if code is None or not isinstance(error.get("message", ""), str):
            return None, [], [f"not a Connect error: {fz.short(out.body, 200)}"]
        if out.status not in fz.HTTP_FOR_CODE.get(code, set()):
            return None, [], [f"HTTP {out.status} for Connect code {error['code']}"]
        return code, [], []

    def connect_stream_outcome(out):
        if out.status != 200:
            return None, [], [f"Connect streaming answered HTTP {out.status}"]
        frames = frames_of(out.body)
        if isinstance(frames, str):
            return None, [], [frames]
        ends = [i for i, (flags, _) in enumerate(frames) if flags & 0x02]
        if ends != [len(frames) - 1]:
            return None, [], [f"end-stream envelopes at {ends} of {len(frames)}"]
        try:
            end = json.loads(frames[-1][1])
        except ValueError:
            return None, [], [f"an end-stream envelope that is not JSON: {frames[-1][1]!r}"]
        if "error" in end:
            code = CONNECT_CODES.get(end["error"].get("code"))
            if code is None:
                return None, [], [f"an end-stream error with code {end['error'].get('code')!r}"]
            return code, frames[:-1], []
        return 0, frames[:-1], []

    name = "webh2" if h2 else "web"
    return fz.Case(index, f"{name}.{protocol}.{family}", "grpc" if h2 else "http", path, description, expect, run,
                   check)


def h2_run(rng, port_ref, path, http_method, content_type, headers, body, after):
    """The request over HTTP/2: (a coroutine function giving an outcome shaped as HTTP/1.1's, its
    description)."""
    fields = [(":method", http_method), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
              ("content-type", content_type)] + [(k.lower(), v) for k, v in headers.items()]
    if after in ("fin", "rst"):
        body = body[: rng.randint(0, max(0, len(body) - 1))]
    pieces = [body]
    if rng.random() < 0.3 and len(body) > 1:
        cut = rng.randint(1, len(body) - 1)
        pieces = [body[:cut], body[cut:]]
    ends = after == "keep"

    def plan(conn, out, writer):
        stream_id = conn.get_next_available_stream_id()
        out.streams[stream_id] = h2fz.Stream()
        conn.send_headers(stream_id, fields, end_stream=ends and not body)
        for i, piece in enumerate(pieces):
            if piece or (ends and i == len(pieces) - 1 and body):
                conn.send_data(stream_id, piece, end_stream=ends and i == len(pieces) - 1)

    abandon = {"fin": "fin-then-read", "rst": "rst"}.get(after)

    async def run():
        return as_http_outcome(await h2fz.exchange(port_ref(), plan, abandon=abandon))

    return run, f"{fields} {fz.short(body, 300)} in {len(pieces)} DATA then {after}"


def as_http_outcome(h2_out):
    """An HTTP/2 exchange's outcome in the shape the checks read (fz.HTTPOutcome)."""
    out = fz.HTTPOutcome()
    out.timed_out = h2_out.timed_out
    out.problems = list(h2_out.problems)
    stream = next(iter(h2_out.streams.values()), None)
    if stream is None or stream.headers is None:
        return out  # no response: status stays None
    if not (stream.ended or stream.reset is not None or h2_out.eof or h2_out.goaway):
        out.timed_out = True
    out.status = int(stream.headers.get(":status", "0"))
    out.headers = {k: [v] for k, v in stream.headers.items() if not k.startswith(":")}
    out.body = stream.body
    if stream.trailers:
        out.problems.append(f"HTTP/2 trailers on a web answer: {stream.trailers}")
    return out


fz.GENERATORS["web"] = web_case
fz.GENERATORS["webh2"] = lambda rng, index, port_ref, max_bytes: web_case(rng, index, port_ref, max_bytes, h2=True)

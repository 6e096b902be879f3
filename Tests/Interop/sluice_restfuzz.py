"""The REST family of the live-gateway fuzzer (sluice_fuzz.py registers it as "rest").

The gateway runs with REST_RULES (`--http-rule`) on the seed's methods: SayHi on a plain
variable, a nested pattern with a custom verb, `**`, and a body "*" route; List (server streaming)
with response_body; Record (client streaming, an NDJSON body). Each case is one HTTP/1.1 request to the HTTP
port: a path built from a template with random segments (percent escapes valid and broken, UTF-8
and not, empty, long, extra or missing segments, wrong verbs), a random query (fields, nested
fields, unknown ones, repeated, enum names and numbers, broken escapes, `+`), a random body (valid
JSON, garbage, arrays, deep, gzip that is not), a random HTTP method and `Accept`. Invariants:

- an HTTP/1.1 response within the timeout;
- no 5xx but 501 (a path no rule has, sent with a body: an unknown method to HTTP JSON), and 503
  never: the gateway hosts these methods;
- a non-2xx answer is the status JSON (`code` an integer 1..16, `message` a string) whose HTTP
  status gRPC's mapping allows for its code (404 and 405 for paths and methods no rule has);
- a 200 is JSON: SayHi's `{"result":…}`, Record's `{"pt":…}`, List's response_body (one `StreamPoint` a line, or an
  array, or SSE events) ending without a status line, unless a status object says why it ended.
"""
import gzip
import json

import sluice_fuzz as fz

REST_RULES = [
    "hello.UserService.SayHi GET /v1/hi/{name}",
    "hello.UserService.SayHi POST /v1/{name=users/*}/greet:hi body=*",
    "hello.UserService.SayHi PUT /v1/files/{name=**}",
    "hello.UserService.SayHi PATCH /v1/hi body=name",
    "proto.StreamService.List GET /v1/points/{pt.name} response_body=pt",
    "proto.StreamService.Record POST /v1/record body=*",
]

SEGMENTS = ["ada", "a%20b", "%E6%97%A5", "%C3", "%ZZ", "%", "%2F", "%2f", "a%00b", "", "x" * 300, "..", ".",
            "users", "greet:hi", "a:b", "%F0%9F%98%80", "+", "a+b", "~-_.", "%25", "A" * 3000]
QUERY_KEYS = ["name", "pt.value", "pt.name", "pt", "value", "bogus", "pt.bogus", "name.x", "", "=", "pt..value",
              "%6Eame", "na%ZZme", "pt.value.x", "count"]
QUERY_VALUES = ["1", "-1", "2147483648", "abc", "", "%ZZ", "a+b", "%C3", "true", "1e3", "NaN", "x" * 500]
BODIES = [b"", b"{}", b'{"name":"ada"}', b'{"name":1}', b"[]", b"null", b'{"name":', b"\xff\xfe", b'{"bogus":1}',
          b'"ada"', b'{"pt":{"value":3}}', b"[" * 200 + b"]" * 200, b'{"name":"' + b"z" * 2000 + b'"}']


def route_for(rng):
    """A path shaped for one of REST_RULES (or none), the rule's HTTP method, and a body that fits
    it; each then broken at times by the caller."""
    kind = rng.randrange(8)
    seg = lambda: rng.choice(SEGMENTS) if rng.random() < 0.5 else rng.choice(["ada", "bo", "x1"])  # noqa: E731
    if kind == 0:
        return f"/v1/hi/{seg()}", "GET", b""
    if kind == 1:
        return f"/v1/users/{seg()}/greet:{rng.choice(['hi', 'hi', 'HI', 'bye'])}", "POST", b'{"name":"ada"}'
    if kind == 2:
        return "/v1/files/" + "/".join(seg() for _ in range(rng.randint(0, 4))), "PUT", b""
    if kind == 3:
        return "/v1/hi", "PATCH", rng.choice([b'"ada"', rb'"\u00e9"', b"1", b"null"])
    if kind == 4:
        return f"/v1/points/{seg()}", "GET", b""
    if kind == 5:
        lines = [rng.choice([b'{"pt":{"value":1}}', b"", b" ", b'{"pt":{"value":"x"}}', b"[1]", b"{"])
                 for _ in range(rng.randint(0, 4))]
        return "/v1/record", "POST", b"\n".join(lines) + rng.choice([b"", b"\n", b"\r\n"])
    if kind == 6:
        return "/v1/" + "/".join(seg() for _ in range(rng.randint(0, 5))), "GET", b""
    return rng.choice(["/v1", "/v1/", "/v2/hi/x", "/v1/hi/x/y", "/v1//hi", "/v1/hi/x:verb", "/V1/HI/x"]), "GET", b""


def query_for(rng):
    if rng.random() < 0.4:
        return ""
    pairs = []
    for _ in range(rng.randint(1, 4)):
        key = rng.choice(QUERY_KEYS)
        pairs.append(key if rng.random() < 0.1 else f"{key}={rng.choice(QUERY_VALUES)}")
    return "?" + "&".join(pairs)


def status_ok(status):
    return status is not None and status < 500


def rest_case(rng, index, port_ref, max_bytes):
    path, method, body = route_for(rng)
    path += query_for(rng)
    if rng.random() < 0.2:
        method = rng.choice(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    if rng.random() < 0.3:
        body = rng.choice(BODIES)
    headers = ""
    accept = rng.choice([None, "application/json", "text/event-stream", "application/x-ndjson", "*/*"])
    if accept:
        headers += f"Accept: {accept}\r\n"
    if rng.random() < 0.1:
        headers += "Content-Encoding: gzip\r\n"
        if rng.random() < 0.5:
            body = gzip.compress(body)
    request = fz.http_request(path, body, method=method, extra_headers=headers)
    description = f"rest {method} {fz.short(path.encode(), 200)} accept={accept}: {fz.short(request, 300)}"

    async def run():
        return await fz.raw_http_case(port_ref(), [request])

    def check(out):
        if errs := fz.response_problems(out):
            return errs
        if method == "OPTIONS":
            return [] if status_ok(out.status) else [f"OPTIONS answered HTTP {out.status}"]
        status = out.status
        if status >= 500 and not (status == 501 and b"unknown method" in out.body):
            return [f"HTTP {status}: {fz.short(out.body, 200)}"]
        content_type = out.headers.get("content-type", [""])[0]
        if status != 200:
            if not content_type.startswith("application/json"):
                return [] if status in (404, 405) else [f"HTTP {status} with {content_type!r}"]
            try:
                error = json.loads(out.body)
            except ValueError:
                return [f"HTTP {status} with a body that is not JSON: {fz.short(out.body, 200)}"]
            code = error.get("code") if isinstance(error, dict) else None
            if not isinstance(code, int) or not 1 <= code <= 16 or not isinstance(error.get("message", ""), str):
                return [f"not a status object: {fz.short(out.body, 200)}"]
            allowed = fz.HTTP_FOR_CODE.get(code, set()) | {404, 405, 413, 415}
            return [] if status in allowed else [f"HTTP {status} for code {code}"]
        text = out.body.decode("utf-8", errors="strict") if out.body else ""
        try:
            if content_type.startswith("application/x-ndjson"):
                values = [json.loads(line) for line in text.splitlines()]
            elif content_type.startswith("text/event-stream"):
                values = [json.loads(chunk.split("data: ", 1)[1]) for chunk in text.strip().split("\n\n") if chunk]
            else:
                values = json.loads(text)
        except (ValueError, IndexError) as e:
            return [f"a 200 whose body does not parse ({e}): {fz.short(out.body, 200)}"]
        if isinstance(values, dict):
            expected = "pt" if path.startswith("/v1/record") else "result"
            return [] if expected in values else [f"a unary 200 without {expected}: {fz.short(out.body, 200)}"]
        for value in values[:-1]:
            if not isinstance(value, dict) or "code" in value:
                return [f"a stream with a status before its end: {fz.short(out.body, 300)}"]
        return []

    return fz.Case(index, "rest", "http", path, description, "any", run, check)


fz.GENERATORS["rest"] = rest_case

"""HTTP JSON calls (PROTOCOL.md, "HTTP JSON") made with the curl binary itself."""
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

CURL = shutil.which("curl")


def curl(*args, input=None, timeout=30):
    """Runs curl; returns (HTTP status, headers dict of lists, body text)."""
    assert CURL, "curl not installed (apt-get install curl)"
    out = subprocess.run(
        [CURL, "-sS", "-D", "/dev/stderr", *args], input=input, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, f"curl failed ({out.returncode}): {out.stderr}"
    status, headers = None, {}
    for line in out.stderr.splitlines():
        if m := re.match(r"HTTP/1\.1 (\d+)", line):
            status, headers = int(m.group(1)), {}  # the last response wins (after a 100 Continue)
        elif ":" in line:
            name, value = line.split(":", 1)
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, out.stdout


def ndjson(body):
    return [json.loads(line) for line in body.splitlines() if line.strip()]


@pytest.mark.parametrize("extra", [(), ("-H", "Content-Type: application/json")])
def test_say_hi(sluice, extra):
    status, headers, body = curl(*extra, "-d", '{"name":"ada"}', f"http://127.0.0.1:{sluice.http_port}/hello.UserService/SayHi")
    assert status == 200
    assert headers["content-type"] == ["application/json"]
    assert re.fullmatch(r"hi ada---\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", json.loads(body)["result"])


def test_list_streams_ndjson_as_produced(start_sluice):
    """Seven lines, each printed when the service sends it: with a 300 ms pace the arrival times
    spread over at least 6 paces (a buffered answer would arrive all at once)."""
    s = start_sluice("--pace-ms", "300")
    proc = subprocess.Popen(
        [CURL, "-sS", "-N", "-d", '{"pt":{"name":"a","value":1}}', f"http://127.0.0.1:{s.http_port}/proto.StreamService/List"],
        stdout=subprocess.PIPE, text=True,
    )
    arrivals = []
    for line in proc.stdout:
        arrivals.append((time.monotonic(), json.loads(line)))
    assert proc.wait(timeout=30) == 0
    frames = [f for _, f in arrivals]
    assert [f["pt"]["value"] for f in frames[:-1]] == list(range(1, 8))
    assert all(f["pt"]["name"] == "a" for f in frames[:-1])
    assert frames[-1] == {"$end": {"code": 0}}
    first, last_message = arrivals[0][0], arrivals[-2][0]
    assert last_message - first >= 6 * 0.3 * 0.9, f"lines arrived together, not as produced: {arrivals}"


def test_list_as_server_sent_events(sluice):
    status, headers, body = curl(
        "-N", "-H", "Accept: text/event-stream", "-d", '{"pt":{"name":"a","value":1}}',
        f"http://127.0.0.1:{sluice.http_port}/proto.StreamService/List",
    )
    assert status == 200 and headers["content-type"] == ["text/event-stream"]
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    frames = [json.loads(e[len("data: "):]) for e in events]
    assert [f["pt"]["value"] for f in frames[:-1]] == list(range(1, 8))
    assert frames[-1] == {"$end": {"code": 0}}


def test_list_by_get_for_event_source(sluice):
    status, _, body = curl(
        "-G", "--data-urlencode", 'request={"pt":{"name":"a b","value":5}}',
        f"http://127.0.0.1:{sluice.http_port}/proto.StreamService/List",
    )
    assert status == 200
    frames = ndjson(body)
    assert [f["pt"]["value"] for f in frames[:-1]] == list(range(5, 12))
    assert frames[0]["pt"]["name"] == "a b"


def test_record_from_an_ndjson_upload(sluice):
    lines = '{"pt":{"name":"a","value":1}}\n{"pt":{"name":"b","value":2}}\n'
    status, _, body = curl(
        "-T", "-", "-H", "Content-Type: application/x-ndjson",
        f"http://127.0.0.1:{sluice.http_port}/proto.StreamService/Record", input=lines,
    )
    assert status == 200
    assert json.loads(body) == {"pt": {"name": "gRPC Stream Server: Record", "value": 1}}


@pytest.mark.parametrize(
    "path, lines, expected",
    [
        ("/proto.StreamService/Route", ['{"pt":{"name":"a","value":1}}'] * 3,
         [{"pt": {"name": "gRPC Stream Server: Route", "value": n}} for n in range(3)]),
        ("/DataService/BidirectionalStream", ['{"data":"x"}', '{"data":"y"}'],
         [{"result": "processed: x"}, {"result": "processed: y"}]),
    ],
)
def test_bidi_ndjson_in_ndjson_out(sluice, path, lines, expected):
    status, headers, body = curl(
        "-T", "-", "-H", "Content-Type: application/x-ndjson", f"http://127.0.0.1:{sluice.http_port}{path}",
        input="".join(l + "\n" for l in lines),
    )
    assert status == 200 and headers["content-type"] == ["application/x-ndjson"]
    assert ndjson(body) == expected + [{"$end": {"code": 0}}]


@pytest.mark.parametrize(
    "args, path, status, code",
    [
        (("-d", "{}"), "/no.Such/Method", 501, 12),
        (("-d", '{"name":'), "/hello.UserService/SayHi", 400, 3),
        (("-d", '{"name":1}'), "/hello.UserService/SayHi", 400, 3),
        ((), "/hello.UserService/SayHi", 405, 12),
        (("-H", "Content-Type: application/grpc", "-d", "{}"), "/hello.UserService/SayHi", 400, 3),
    ],
)
def test_errors_before_any_message(sluice, args, path, status, code):
    got, headers, body = curl(*args, f"http://127.0.0.1:{sluice.http_port}{path}")
    assert got == status
    error = json.loads(body)
    assert error["code"] == code and error["message"]
    if status == 405:
        assert headers["allow"] == ["POST, PUT, OPTIONS"]


def test_deadline_before_any_message_is_504(start_sluice):
    """Record answers only after the half-close; the body stays open past the deadline, so the
    deadline ends the RPC first. (curl blocks reading stdin, so it reads the answer once stdin
    closes; the gateway waits for the end of the request before closing the connection.)"""
    s = start_sluice("--log-level", "debug")
    proc = subprocess.Popen(
        [CURL, "-sS", "-D", "/dev/stderr", "-T", "-", "-H", "grpc-timeout: 100m",
         f"http://127.0.0.1:{s.http_port}/proto.StreamService/Record"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ended = s.wait_for_log("HTTP RPC ended", "Record")
    out, err = proc.communicate(timeout=30)  # closes stdin now, after the RPC ended
    assert ended and "deadlineExceeded" in ended[0]
    assert re.search(r"HTTP/1\.1 504", err), err
    assert json.loads(out)["code"] == 4


def test_oversized_body_is_413(start_sluice):
    s = start_sluice("--max-message-bytes", "1024")
    status, _, body = curl(
        "--data-binary", "@-", f"http://127.0.0.1:{s.http_port}/hello.UserService/SayHi",
        input='{"name":"' + "x" * 5000 + '"}',
    )
    assert status == 413
    assert json.loads(body)["code"] == 8


def test_error_after_messages_is_the_end_line(sluice):
    """A bad NDJSON line after responses went out ends the stream with an `$end` line. The bad line
    comes after 6,000 good ones: the gateway holds a service at most 32 responses ahead of what it
    has written, so the 200 status line and the first replies are out before it is read."""
    valid = 6000
    status, _, body = curl(
        "-T", "-", f"http://127.0.0.1:{sluice.http_port}/DataService/BidirectionalStream",
        input='{"data":"x"}\n' * valid + '{"data":"y","bogus":1}\n',
    )
    lines = ndjson(body)
    assert status == 200
    # The bad line fails the call: replies not yet written when it is read are not sent.
    assert 0 < len(lines) - 1 <= valid
    assert lines[:-1] == [{"result": "processed: x"}] * (len(lines) - 1)
    assert lines[-1]["$end"]["code"] == 3 and f"line {valid + 1}" in lines[-1]["$end"]["message"]
    assert "bogus" in lines[-1]["$end"]["message"]


def test_headers_are_metadata_both_ways(start_sluice, tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("t0k\n")
    s = start_sluice("--echo-metadata", "--require-bearer", f"file:{tokens}")
    status, headers, _ = curl(
        "-H", "Authorization: Bearer t0k", "-H", "grpc-metadata-tenant: acme", "-d", '{"name":"ada"}',
        f"http://127.0.0.1:{s.http_port}/hello.UserService/SayHi",
    )
    assert status == 200  # the token reached the service's authenticator
    assert headers["grpc-metadata-echo-tenant"] == ["acme"]
    assert "grpc-metadata-echo-authorization" not in headers  # credentials are never echoed


def test_hanging_up_cancels_the_rpc(start_sluice):
    s = start_sluice("--pace-ms", "1000", "--log-level", "debug")
    proc = subprocess.Popen(
        [CURL, "-sS", "-N", "-d", '{"pt":{"value":1}}', f"http://127.0.0.1:{s.http_port}/proto.StreamService/List"],
        stdout=subprocess.PIPE, text=True,
    )
    assert json.loads(proc.stdout.readline())["pt"]["value"] == 1
    proc.kill()
    proc.wait()
    finished = s.wait_for_log("RPC finished", "proto.StreamService/List")
    assert finished and "code=cancelled" in finished[0], "the List should be cancelled when curl hangs up"


def test_cors_preflight_and_origin_policy(start_sluice):
    s = start_sluice("--allowed-origin", "http://app.example")
    url = f"http://127.0.0.1:{s.http_port}/hello.UserService/SayHi"
    status, headers, _ = curl(
        "-X", "OPTIONS", "-H", "Origin: http://app.example", "-H", "Access-Control-Request-Method: POST",
        "-H", "Access-Control-Request-Headers: content-type", url,
    )
    assert status == 204
    assert headers["access-control-allow-origin"] == ["http://app.example"]
    assert "POST" in headers["access-control-allow-methods"][0]
    status, headers, _ = curl("-H", "Origin: http://app.example", "-d", '{"name":"a"}', url)
    assert status == 200 and headers["access-control-allow-origin"] == ["http://app.example"]
    status, _, body = curl("-H", "Origin: http://evil.example", "-d", '{"name":"a"}', url)
    assert status == 403 and json.loads(body)["code"] == 7


def test_keep_alive_serves_several_calls_on_one_connection(sluice):
    url = f"http://127.0.0.1:{sluice.http_port}/hello.UserService/SayHi"
    out = subprocess.run(
        [CURL, "-sS", "-v", "-d", '{"name":"a"}', url, "--next", "-d", '{"name":"b"}', url],
        capture_output=True, text=True, timeout=30,
    )
    assert out.stdout.count('"result":"hi ') == 2
    assert "Re-using existing connection" in out.stderr


def test_page_is_served_from_any_working_directory(start_sluice, tmp_path):
    # The page is built into the binary: a gateway started far from the repository still serves
    # it, byte for byte; --public-dir serves a folder instead, and an empty one serves nothing.
    root = Path(__file__).resolve().parents[2]
    s = start_sluice(cwd=tmp_path)
    base = f"http://127.0.0.1:{s.http_port}"
    for path, name, ctype in [("/", "index.html", "text/html"), ("/sluice-client.js", "sluice-client.js", "text/javascript")]:
        status, headers, body = curl(base + path)
        assert status == 200, body
        assert headers["content-type"][0].startswith(ctype)
        assert body == (root / "public" / name).read_text()
    status, _, body = curl(base + "/nope.js")
    assert status == 404 and json.loads(body)["code"] == 5

    (tmp_path / "index.html").write_text("<p>mine</p>")
    s = start_sluice("--public-dir", str(tmp_path), cwd=tmp_path)
    status, _, body = curl(f"http://127.0.0.1:{s.http_port}/")
    assert (status, body) == (200, "<p>mine</p>")

    s = start_sluice("--public-dir", "", cwd=tmp_path)
    status, _, body = curl(f"http://127.0.0.1:{s.http_port}/")
    assert status == 404, body


def test_gzip_request_bodies_and_responses(sluice, tmp_path):
    """`Content-Encoding: gzip` bodies are inflated, `Accept-Encoding: gzip` gets a large single
    response compressed (curl --compressed inflates it), and an encoding the gateway cannot read is
    415 naming the accepted ones, never "bad JSON"."""
    import gzip

    url = f"http://127.0.0.1:{sluice.http_port}/hello.UserService/SayHi"
    name = "x" * 5000
    (tmp_path / "body.gz").write_bytes(gzip.compress(json.dumps({"name": name}).encode()))
    status, headers, body = curl("--compressed", "-H", "Content-Encoding: gzip", "-H", "Content-Type: application/json",
                                 "--data-binary", f"@{tmp_path / 'body.gz'}", url)
    assert status == 200 and headers["content-encoding"] == ["gzip"]
    assert json.loads(body)["result"].startswith("hi " + name + "---")
    # A small response stays plain.
    status, headers, body = curl("--compressed", "-d", '{"name":"ada"}', url)
    assert status == 200 and "content-encoding" not in headers
    # Brotli: 415, with the encodings that work.
    status, headers, body = curl("-H", "Content-Encoding: br", "-d", '{"name":"ada"}', url)
    assert status == 415 and headers["accept-encoding"] == ["gzip, identity"]
    assert json.loads(body)["code"] == 3 and '"br"' in json.loads(body)["message"]
    # An NDJSON stream (Record) is read line by line: gzip is refused there.
    status, headers, body = curl("-H", "Content-Encoding: gzip", "--data-binary", f"@{tmp_path / 'body.gz'}",
                                 f"http://127.0.0.1:{sluice.http_port}/proto.StreamService/Record")
    assert status == 415 and headers["accept-encoding"] == ["identity"]
    # A body marked gzip that is not: a clear error about gzip.
    status, headers, body = curl("-H", "Content-Encoding: gzip", "-d", '{"name":"ada"}', url)
    assert status == 500 and "gzip" in json.loads(body)["message"]

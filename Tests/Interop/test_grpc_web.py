"""gRPC-Web (gRPC's PROTOCOL-WEB) on both ports, with clients we did not write: PyPI `sonora`
(HTTP/1.1, unary and server streaming), `buf curl --protocol grpcweb` (HTTP/1.1 on the HTTP port,
h2c on the native port, every kind of method), and raw bytes over http.client and h2 for the text
and JSON codecs and for frames no client should send. Hosted services and an upstream (grpcio's
lab server, with and without descriptors) alike."""
import base64
import http.client
import json
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import sonora.client

from conftest import json_stream
from test_upstream import SERVICE, LabServer, lab  # noqa: F401  (the lab fixture)

ROOT = Path(__file__).resolve().parents[2]
PROTOS = str(ROOT / "Protos")


def frame(message, flags=0):
    return struct.pack(">BI", flags, len(message)) + message


def parse_body(body):
    """(messages, trailers) of a binary gRPC-Web response body; the trailer frame must be last."""
    messages, trailers, offset = [], None, 0
    while offset < len(body):
        assert trailers is None, "bytes after the trailer frame"
        flags, length = struct.unpack(">BI", body[offset:offset + 5])
        data = body[offset + 5:offset + 5 + length]
        assert len(data) == length, "a frame cut short"
        offset += 5 + length
        if flags & 0x80:
            trailers = {}
            for line in data.decode("ascii").split("\r\n"):
                if line:
                    key, value = line.split(":", 1)
                    trailers[key.strip()] = value.strip()
        else:
            messages.append(data)
    return messages, trailers


def post(port, path, body, content_type="application/grpc-web+proto", headers=None):
    """One gRPC-Web request over HTTP/1.1: (status, headers as a lowercase dict, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type, **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def decode_text(text):
    """A grpc-web-text body: base64 in segments, each of which may end with padding."""
    decoded, segment = b"", b""
    for index in range(0, len(text), 4):
        group = text[index:index + 4]
        segment += group
        if group.endswith(b"=") or index + 4 >= len(text):
            decoded += base64.b64decode(segment)
            segment = b""
    return decoded


def status_of(headers, trailers):
    """The call's grpc-status and grpc-message, from the trailer frame or a trailers-only head."""
    source = trailers if trailers is not None else headers
    return int(source["grpc-status"]), source.get("grpc-message", "")


def buf_curl(url, *args, protocol="grpcweb", data=None, schema=PROTOS, timeout=30):
    command = ["buf", "curl", "--protocol", protocol, "--schema", schema, *args, url]
    if data is not None:
        command += ["-d", "@-"]
    result = subprocess.run(command, input=data, capture_output=True, text=True, timeout=timeout)
    return result


# MARK: - sonora (HTTP/1.1)


def test_sonora_unary_and_server_streaming_on_the_http_port(sluice, stubs):
    with sonora.client.insecure_web_channel(f"http://127.0.0.1:{sluice.http_port}") as channel:
        say_hi = channel.unary_unary("/hello.UserService/SayHi", stubs.hello_pb2.Request.SerializeToString,
                                     stubs.hello_pb2.Response.FromString)
        assert say_hi(stubs.hello_pb2.Request(name="ada"), timeout=10).result.startswith("hi ada---")
        listing = channel.unary_stream("/proto.StreamService/List", stubs.stream_pb2.StreamRequest.SerializeToString,
                                       stubs.stream_pb2.StreamResponse.FromString)
        request = stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(name="n", value=5))
        values = [m.pt.value for m in listing(request, timeout=10)]
    # The same method over native gRPC gives the same messages.
    with grpc.insecure_channel(sluice.grpc_target) as channel:
        native = stubs.stream_pb2_grpc.StreamServiceStub(channel).List(request, timeout=10)
        assert values == [m.pt.value for m in native]
    assert len(values) > 1


def test_sonora_sees_metadata_errors_and_deadlines(start_sluice, stubs):
    s = start_sluice("--echo-metadata", "--pace-ms", "300")
    with sonora.client.insecure_web_channel(f"http://127.0.0.1:{s.http_port}") as channel:
        say_hi = channel.unary_unary("/hello.UserService/SayHi", stubs.hello_pb2.Request.SerializeToString,
                                     stubs.hello_pb2.Response.FromString)
        reply, call = say_hi.with_call(stubs.hello_pb2.Request(name="ada"), timeout=10,
                                       metadata=[("x-trace", "abc"), ("x-blob-bin", b"\x00\xff")])
        assert reply.result.startswith("hi ada")
        initial = {k.lower(): v for k, v in call.initial_metadata()}
        assert initial["echo-x-trace"] == "abc"
        assert base64.b64decode(initial["echo-x-blob-bin"] + "==") == b"\x00\xff"
        assert dict(call.trailing_metadata())["grpc-status"] == "0"

        unknown = channel.unary_unary("/hello.UserService/Nope", stubs.hello_pb2.Request.SerializeToString,
                                      stubs.hello_pb2.Response.FromString)
        with pytest.raises(grpc.RpcError) as failure:
            unknown(stubs.hello_pb2.Request(name="ada"), timeout=10)
        assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "unknown method /hello.UserService/Nope" in failure.value.details()

        # List paces its messages 300 ms apart: a 700 ms deadline ends it after some.
        listing = channel.unary_stream("/proto.StreamService/List", stubs.stream_pb2.StreamRequest.SerializeToString,
                                       stubs.stream_pb2.StreamResponse.FromString)
        received = []
        with pytest.raises(grpc.RpcError) as failure:
            for message in listing(stubs.stream_pb2.StreamRequest(), timeout=0.7):
                received.append(message)
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 1 <= len(received) <= 3


# MARK: - buf curl (both ports, every kind)


ROUTE_INPUT = '{"pt":{"name":"a","value":1}}\n{"pt":{"name":"b","value":2}}\n{"pt":{"name":"c","value":3}}\n'


@pytest.mark.parametrize("port_kind", ["native h2c", "http/1.1", "one-port h2c"])
def test_buf_curl_grpcweb_reaches_every_kind(start_sluice, stubs, port_kind):
    sluice = start_sluice(*(["--grpc-on-http-port"] if port_kind == "one-port h2c" else []))
    if port_kind == "native h2c":
        base, extra = f"http://127.0.0.1:{sluice.grpc_port}", ["--http2-prior-knowledge"]
    elif port_kind == "one-port h2c":
        base, extra = f"http://127.0.0.1:{sluice.http_port}", ["--http2-prior-knowledge"]
    else:
        base, extra = f"http://127.0.0.1:{sluice.http_port}", []
    reference = f"http://127.0.0.1:{sluice.grpc_port}"

    def both(path, data):
        web = buf_curl(base + path, *extra, data=data)
        native = buf_curl(reference + path, "--http2-prior-knowledge", protocol="grpc", data=data)
        assert web.returncode == 0, web.stderr
        assert native.returncode == 0, native.stderr
        return json_stream(web.stdout), json_stream(native.stdout)

    web, native = both("/hello.UserService/SayHi", '{"name":"ada"}')
    assert web[0]["result"].startswith("hi ada---") and native[0]["result"].startswith("hi ada---")
    web, native = both("/proto.StreamService/List", '{"pt":{"value":3}}')
    assert web == native and len(web) > 1
    web, native = both("/proto.StreamService/Record", ROUTE_INPUT)
    assert web == native and len(web) == 1
    if extra:
        web, native = both("/proto.StreamService/Route", ROUTE_INPUT)
        assert web == native and len(web) >= 3
    else:
        # buf curl asks for HTTP/2 for bidi; over HTTP/1.1 Route still answers a client that sends
        # its whole body first.
        points = [json.loads(line)["pt"] for line in ROUTE_INPUT.splitlines()]
        body = b"".join(frame(stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(**p)).SerializeToString())
                        for p in points)
        status, headers, answer = post(sluice.http_port, "/proto.StreamService/Route", body)
        messages, trailers = parse_body(answer)
        assert status == 200 and trailers["grpc-status"] == "0" and len(messages) >= 3


def test_unknown_methods_are_unimplemented_on_both_ports(sluice):
    # A trailers-only answer: 200, the status in the head, no body.
    status, headers, body = post(sluice.http_port, "/hello.UserService/Missing", frame(b""))
    assert status == 200 and body == b"" and headers["content-length"] == "0"
    assert status_of(headers, None) == (12, "unknown method /hello.UserService/Missing")
    # buf curl checks the method against its schema, so raw HTTP/2 (h2) asks the native port.
    import h2.connection
    import h2.events

    connection = h2.connection.H2Connection()
    connection.initiate_connection()
    with socket.create_connection(("127.0.0.1", sluice.grpc_port), timeout=10) as sock:
        sock.sendall(connection.data_to_send())
        connection.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1"),
                                    (":path", "/hello.UserService/Missing"),
                                    ("content-type", "application/grpc-web+proto")])
        connection.send_data(1, frame(b""), end_stream=True)
        sock.sendall(connection.data_to_send())
        answer = None
        while answer is None:
            data = sock.recv(65536)
            assert data, "closed before the answer"
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    answer = dict((k.decode(), v.decode()) for k, v in event.headers)
                    assert event.stream_ended is not None, "a trailers-only answer ends the stream"
            sock.sendall(connection.data_to_send())
    assert answer[":status"] == "200" and answer["content-type"] == "application/grpc-web+proto"
    assert answer["grpc-status"] == "12" and "content-length" not in answer


# MARK: - Codecs: text and JSON, by hand


def test_grpc_web_text_allows_padding_mid_stream_and_answers_in_text(sluice, stubs):
    point = stubs.stream_pb2.StreamRequest
    one = frame(point(pt=stubs.stream_pb2.StreamPoint(name="ab", value=1)).SerializeToString())
    two = frame(point(pt=stubs.stream_pb2.StreamPoint(name="b", value=41)).SerializeToString())
    # Each message encoded on its own, so the first one's padding sits mid-body (13 bytes framed:
    # its base64 ends with '=').
    body = base64.b64encode(one) + base64.b64encode(two)
    assert b"=" in base64.b64encode(one)
    status, headers, answer = post(sluice.http_port, "/proto.StreamService/Record", body,
                                   content_type="application/grpc-web-text")
    assert status == 200
    assert headers["content-type"] == "application/grpc-web-text+proto"
    messages, trailers = parse_body(decode_text(answer))
    assert trailers["grpc-status"] == "0" and len(messages) == 1
    total = stubs.stream_pb2.StreamResponse.FromString(messages[0])
    # Record answers once, as it does natively to the same two messages.
    with grpc.insecure_channel(sluice.grpc_target) as channel:
        native = stubs.stream_pb2_grpc.StreamServiceStub(channel).Record(
            iter([point.FromString(one[5:]), point.FromString(two[5:])]), timeout=10)
    assert total == native


def test_text_is_answered_when_asked_with_accept(sluice, stubs):
    request = frame(stubs.hello_pb2.Request(name="ada").SerializeToString())
    status, headers, answer = post(sluice.http_port, "/hello.UserService/SayHi", request,
                                   headers={"Accept": "application/grpc-web-text"})
    assert status == 200 and headers["content-type"] == "application/grpc-web-text+proto"
    replies, trailers = parse_body(decode_text(answer))
    assert stubs.hello_pb2.Response.FromString(replies[0]).result.startswith("hi ada")
    assert trailers["grpc-status"] == "0"


def test_grpc_web_json_messages_go_through_the_codec(sluice):
    status, headers, answer = post(sluice.http_port, "/hello.UserService/SayHi", frame(b'{"name":"ada"}'),
                                   content_type="application/grpc-web+json")
    assert status == 200 and headers["content-type"] == "application/grpc-web+json"
    messages, trailers = parse_body(answer)
    assert json.loads(messages[0])["result"].startswith("hi ada---")
    assert trailers["grpc-status"] == "0"
    # JSON that is not the method's input: INVALID_ARGUMENT naming the problem, trailers-only.
    status, headers, answer = post(sluice.http_port, "/hello.UserService/SayHi", frame(b'{"nope":1}'),
                                   content_type="application/grpc-web+json")
    code, message = status_of(headers, parse_body(answer)[1])
    assert code == 3 and "nope" in message


# MARK: - Frames no client should send


@pytest.mark.parametrize("body, content_type, code, words", [
    (frame(b"\n\x03ada", flags=0x80), "application/grpc-web", 13, "trailer frame"),
    (b"AAAA!!!!", "application/grpc-web-text", 13, "not base64"),
    (frame(b"\n\x03ada")[:-2], "application/grpc-web", 13, "ended inside a message"),
    (struct.pack(">BI", 0, 1 << 30), "application/grpc-web", 8, "over the limit"),
    (frame(b"\n\x03ada", flags=1), "application/grpc-web", 13, "compressed"),
    (frame(b"\n\x03ada") + frame(b"\n\x03bob"), "application/grpc-web", 13, "more than one request"),
])
def test_bad_request_frames_get_a_status_and_harm_nothing(sluice, body, content_type, code, words):
    status, headers, answer = post(sluice.http_port, "/hello.UserService/SayHi", body, content_type=content_type)
    assert status == 200
    text = content_type.endswith("-text")
    trailers = parse_body(base64.b64decode(answer) if text and answer else answer)[1] if answer else None
    got, message = status_of(headers, trailers)
    assert got == code and words in message, (got, message)
    # The gateway goes on serving.
    status, headers, answer = post(sluice.http_port, "/hello.UserService/SayHi", frame(b"\n\x03ada"))
    assert parse_body(answer)[1]["grpc-status"] == "0"


def test_wrong_method_and_codec_are_refused_with_http_statuses(sluice):
    connection = http.client.HTTPConnection("127.0.0.1", sluice.http_port, timeout=10)
    connection.request("GET", "/hello.UserService/SayHi", headers={"Content-Type": "application/grpc-web"})
    response = connection.getresponse()
    response.read()
    assert response.status == 405 and response.getheader("Allow") == "POST, OPTIONS"
    assert response.getheader("grpc-status") == "12"
    connection.close()
    status, headers, _ = post(sluice.http_port, "/hello.UserService/SayHi", frame(b""),
                              content_type="application/grpc-web+thrift")
    assert status == 415 and headers["grpc-status"] == "12"


def test_a_stalled_message_ends_at_the_body_timeout(start_sluice):
    s = start_sluice("--body-timeout", "1")
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=10) as connection:
        head = (b"POST /hello.UserService/SayHi HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/grpc-web\r\nContent-Length: 10\r\n\r\n")
        connection.sendall(head + frame(b"\n\x03ada")[:6])  # the prefix and one byte, then nothing
        started = time.monotonic()
        answer = b""
        while b"grpc-status" not in answer:
            chunk = connection.recv(4096)
            assert chunk, f"closed without a status: {answer!r}"
            answer += chunk
        assert 0.8 < time.monotonic() - started < 5
        assert b"grpc-status: 4" in answer and b"--body-timeout" in answer


# MARK: - Browsers: CORS and the origin policy


def test_cors_preflight_and_exposed_headers(start_sluice):
    s = start_sluice("--allowed-origin", "http://app.example")
    connection = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=10)
    connection.request("OPTIONS", "/hello.UserService/SayHi", headers={
        "Origin": "http://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-grpc-web,x-user-agent,grpc-timeout"})
    response = connection.getresponse()
    response.read()
    assert response.status == 204
    assert response.getheader("Access-Control-Allow-Origin") == "http://app.example"
    allowed = response.getheader("Access-Control-Allow-Headers").lower()
    assert all(h in allowed for h in ("x-grpc-web", "x-user-agent", "grpc-timeout", "content-type"))
    assert "POST" in response.getheader("Access-Control-Allow-Methods")
    connection.close()

    status, headers, answer = post(s.http_port, "/hello.UserService/SayHi", frame(b"\n\x03ada"),
                                   headers={"Origin": "http://app.example", "X-Grpc-Web": "1"})
    assert status == 200 and headers["access-control-allow-origin"] == "http://app.example"
    exposed = [h.strip() for h in headers["access-control-expose-headers"].split(",")]
    assert "grpc-status" in exposed and "grpc-message" in exposed
    status, headers, _ = post(s.http_port, "/hello.UserService/SayHi", frame(b"\n\x03ada"),
                              headers={"Origin": "http://evil.example"})
    assert status == 403


def test_bearer_tokens_apply_to_grpc_web(start_sluice, monkeypatch):
    monkeypatch.setenv("WEB_TOKEN", "s3cret")
    s = start_sluice("--require-bearer", "env:WEB_TOKEN")
    for port, via in ((s.http_port, "http"), (s.grpc_port, "h2")):
        url = f"http://127.0.0.1:{port}/hello.UserService/SayHi"
        extra = ["--http2-prior-knowledge"] if via == "h2" else []
        refused = buf_curl(url, *extra, data='{"name":"ada"}')
        assert refused.returncode != 0 and "unauthenticated" in refused.stdout + refused.stderr
        allowed = buf_curl(url, *extra, "-H", "Authorization: Bearer s3cret", data='{"name":"ada"}')
        assert allowed.returncode == 0, allowed.stderr
        assert json_stream(allowed.stdout)[0]["result"].startswith("hi ada")


def test_metrics_count_grpc_web_calls(start_sluice):
    s = start_sluice()
    post(s.http_port, "/hello.UserService/SayHi", frame(b"\n\x03ada"))
    with urllib.request.urlopen(f"http://127.0.0.1:{s.http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert any('transport="grpc-web"' in line and "sluice_rpcs_total" in line and 'code="ok"' in line
               for line in text.splitlines()), text


# MARK: - An upstream


@pytest.mark.parametrize("descriptors", [True, False])
def test_grpc_web_reaches_an_upstream(lab, start_sluice, descriptors):  # noqa: F811
    upstream = LabServer(lab)
    try:
        extra = ["--descriptor-set", str(lab.protoset)] if descriptors else []
        s = start_sluice("--upstream", f"{SERVICE}={upstream.address}", *extra)
        # buf reads a descriptor set by its extension.
        schema = str(lab.protoset) + ".binpb"
        Path(schema).write_bytes(Path(lab.protoset).read_bytes())
        for base, args in ((f"http://127.0.0.1:{s.grpc_port}", ["--http2-prior-knowledge"]),
                           (f"http://127.0.0.1:{s.http_port}", [])):
            echo = buf_curl(f"{base}/{SERVICE}/Echo", *args, data='{"name":"widget","count":"42"}', schema=schema)
            assert echo.returncode == 0, echo.stderr
            assert json_stream(echo.stdout)[0]["item"]["name"] == "widget"
            count = buf_curl(f"{base}/{SERVICE}/Count", *args, data='{"count":3}', schema=schema)
            assert count.returncode == 0, count.stderr
            assert len(json_stream(count.stdout)) == 3
            summed = buf_curl(f"{base}/{SERVICE}/Sum", *args, data='{"count":"1"}\n{"count":"2"}\n', schema=schema)
            assert summed.returncode == 0, summed.stderr
            assert json_stream(summed.stdout)[0]["sum"] == "3"
            failed = buf_curl(f"{base}/{SERVICE}/Fail", *args, data='{"code":5,"message":"no such widget"}',
                              schema=schema)
            error = json.loads(failed.stderr)
            assert failed.returncode != 0 and error == {"code": "not_found", "message": "no such widget"}
        # JSON messages need descriptors.
        status, headers, answer = post(s.http_port, f"/{SERVICE}/Echo", frame(b'{"name":"w"}'),
                                       content_type="application/grpc-web+json")
        code, message = status_of(headers, parse_body(answer)[1] if answer else None)
        if descriptors:
            assert code == 0, message
        else:
            assert code == 12 and "no descriptors" in message
    finally:
        upstream.kill()


# MARK: - TLS, and HTTP/1.1 on the native port


def test_grpc_web_over_tls_on_both_ports(start_sluice, tmp_path):
    from conftest import make_pki

    pki = make_pki(tmp_path)
    s = start_sluice("--tls-cert", str(pki["chain"]), "--tls-key", str(pki["key"]))
    # The native port negotiates h2 by ALPN; the HTTP port HTTP/1.1.
    for port in (s.grpc_port, s.http_port):
        result = buf_curl(f"https://127.0.0.1:{port}/hello.UserService/SayHi", "--cacert", str(pki["ca"]),
                          "-v", data='{"name":"ada"}')
        assert result.returncode == 0, result.stderr
        assert json_stream(result.stdout)[0]["result"].startswith("hi ada---")
        assert ("HTTP/2.0 200" if port == s.grpc_port else "HTTP/1.1 200") in result.stderr


def test_http1_on_the_native_port_is_told_where_to_go(sluice):
    status, headers, body = post(sluice.grpc_port, "/hello.UserService/SayHi", frame(b"\n\x03ada"))
    assert status == 505 and headers["connection"] == "close"
    assert b"HTTP port (--http-port" in body
    # HTTP/2 clients are unaffected.
    result = buf_curl(f"http://127.0.0.1:{sluice.grpc_port}/hello.UserService/SayHi", "--http2-prior-knowledge",
                      data='{"name":"ada"}')
    assert result.returncode == 0, result.stderr

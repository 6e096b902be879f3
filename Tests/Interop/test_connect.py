"""Connect (connectrpc.com's protocol) on both ports, with clients we did not write: PyPI
`connectrpc` (its defaults: binary protobuf, gzip-compressed requests; its JSON codec; its GET for
methods without side effects), `buf curl --protocol connect` (HTTP/1.1 on the HTTP port, h2c on the
native port), and curl for raw requests. Hosted services and an upstream (grpcio's lab server) with
rich error details. A JSON request without `Connect-Protocol-Version` stays Sluice's HTTP JSON."""
import base64
import gzip
import http.client
import json
import struct
import subprocess
import time
from pathlib import Path

import pytest
from connectrpc.client import ConnectClientSync
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType

from conftest import json_stream
from test_upstream import SERVICE, LabServer, lab  # noqa: F401  (the lab fixture)

ROOT = Path(__file__).resolve().parents[2]
PROTOS = str(ROOT / "Protos")


def method(service, name, request, response, stream_type, idempotency=IdempotencyLevel.UNKNOWN):
    return MethodInfo(name=name, service_name=service, input=request, output=response,
                      idempotency_level=idempotency, stream_type=stream_type)


def seed_methods(stubs):
    hello, stream = stubs.hello_pb2, stubs.stream_pb2
    return {
        "SayHi": method("hello.UserService", "SayHi", hello.Request, hello.Response, StreamType.UNARY),
        "Nope": method("hello.UserService", "Nope", hello.Request, hello.Response, StreamType.UNARY),
        "List": method("proto.StreamService", "List", stream.StreamRequest, stream.StreamResponse,
                       StreamType.SERVER_STREAM),
        "Record": method("proto.StreamService", "Record", stream.StreamRequest, stream.StreamResponse,
                         StreamType.CLIENT_STREAM),
    }


def buf_curl(url, *args, data=None, schema=PROTOS, timeout=30):
    command = ["buf", "curl", "--protocol", "connect", "--schema", schema, *args, url]
    if data is not None:
        command += ["-d", "@-"]
    return subprocess.run(command, input=data, capture_output=True, text=True, timeout=timeout)


def post(port, path, body, headers):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


# MARK: - connectrpc


@pytest.mark.parametrize("codec", ["proto", "json"])
def test_connectrpc_with_its_defaults_reaches_every_kind_over_http1(sluice, stubs, codec):
    methods = seed_methods(stubs)
    chosen = google_protobuf_binary_codec() if codec == "proto" else google_protobuf_json_codec()
    # Its defaults: gzip-compressed requests, gzip accepted.
    with ConnectClientSync(f"http://127.0.0.1:{sluice.http_port}", codec=chosen) as client:
        reply = client.execute_unary(request=stubs.hello_pb2.Request(name="ada" * 1000), method=methods["SayHi"])
        assert reply.result.startswith("hi " + "ada" * 1000 + "---")
        request = stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(name="n", value=10))
        values = [m.pt.value for m in client.execute_server_stream(request=request, method=methods["List"])]
        assert values == list(range(10, 17))
        total = client.execute_client_stream(request=iter([request] * 3), method=methods["Record"])
        assert total.pt.name == "gRPC Stream Server: Record"


def test_connectrpc_errors_arrive_with_their_codes(sluice, stubs):
    methods = seed_methods(stubs)
    with ConnectClientSync(f"http://127.0.0.1:{sluice.http_port}",
                           codec=google_protobuf_binary_codec()) as client:
        with pytest.raises(ConnectError) as failure:
            client.execute_unary(request=stubs.hello_pb2.Request(name="ada"), method=methods["Nope"])
        assert failure.value.code == Code.UNIMPLEMENTED
        assert failure.value.message == "unknown method /hello.UserService/Nope"
        with pytest.raises(ConnectError) as failure:
            client.execute_unary(request=stubs.hello_pb2.Request(name="ada"), method=methods["SayHi"],
                                 headers={"connect-timeout-ms": "soon"})
        assert failure.value.code == Code.INVALID_ARGUMENT and "Connect-Timeout-Ms" in failure.value.message


def test_connectrpc_deadline_ends_a_stream(start_sluice, stubs):
    s = start_sluice("--pace-ms", "300")
    methods = seed_methods(stubs)
    with ConnectClientSync(f"http://127.0.0.1:{s.http_port}", codec=google_protobuf_binary_codec()) as client:
        received = []
        with pytest.raises(ConnectError) as failure:
            for message in client.execute_server_stream(request=stubs.stream_pb2.StreamRequest(),
                                                        method=methods["List"], timeout_ms=700):
                received.append(message)
        assert failure.value.code == Code.DEADLINE_EXCEEDED
        assert 1 <= len(received) <= 3


# MARK: - buf curl (both ports)


@pytest.mark.parametrize("port_kind", ["native h2c", "http/1.1"])
def test_buf_curl_connect_matches_native_grpc(sluice, port_kind):
    base, extra = ((f"http://127.0.0.1:{sluice.grpc_port}", ["--http2-prior-knowledge"]) if port_kind == "native h2c"
                   else (f"http://127.0.0.1:{sluice.http_port}", []))
    reference = f"http://127.0.0.1:{sluice.grpc_port}"
    calls = [("/proto.StreamService/List", '{"pt":{"value":3}}'),
             ("/proto.StreamService/Record", '{"pt":{"value":1}}\n{"pt":{"value":2}}\n')]
    if extra:  # bidi needs HTTP/2
        calls.append(("/proto.StreamService/Route", '{"pt":{"name":"a"}}\n{"pt":{"name":"b"}}\n'))
    for path, data in calls:
        connect = buf_curl(base + path, *extra, data=data)
        native = subprocess.run(["buf", "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--schema", PROTOS,
                                 "-d", "@-", reference + path], input=data, capture_output=True, text=True,
                                timeout=30)
        assert connect.returncode == 0, connect.stderr
        assert json_stream(connect.stdout) == json_stream(native.stdout)
    unary = buf_curl(base + "/hello.UserService/SayHi", *extra, data='{"name":"ada"}')
    assert unary.returncode == 0, unary.stderr
    assert json_stream(unary.stdout)[0]["result"].startswith("hi ada---")


def test_a_streaming_method_called_as_unary_is_refused(sluice):
    status, headers, body = post(sluice.http_port, "/proto.StreamService/List", b'{}',
                                 {"Content-Type": "application/json", "Connect-Protocol-Version": "1"})
    assert status == 501 and headers["content-type"] == "application/json"
    error = json.loads(body)
    assert error["code"] == "unimplemented" and "application/connect+proto" in error["message"]


# MARK: - Raw requests with curl and http.client


def test_curl_connect_unary_json_and_errors(sluice):
    base = f"http://127.0.0.1:{sluice.http_port}/hello.UserService/SayHi"
    out = subprocess.run(["curl", "-s", "-i", "-H", "Content-Type: application/json", "-H",
                          "Connect-Protocol-Version: 1", "-d", '{"name":"ada"}', base],
                         capture_output=True, text=True, timeout=15).stdout
    head, _, body = out.partition("\n\n")
    assert head.startswith("HTTP/1.1 200") and json.loads(body)["result"].startswith("hi ada---")
    out = subprocess.run(["curl", "-s", "-i", "-H", "Content-Type: application/json", "-H",
                          "Connect-Protocol-Version: 1", "-d", '{"nam":"ada"}', base],
                         capture_output=True, text=True, timeout=15).stdout
    head, _, body = out.partition("\n\n")
    assert head.startswith("HTTP/1.1 400")
    assert json.loads(body) == {"code": "invalid_argument", "message": 'invalid hello.Request: unknown field "nam"'}
    # Without Connect-Protocol-Version, JSON stays Sluice's HTTP JSON (numeric google.rpc.Status codes).
    out = subprocess.run(["curl", "-s", "-d", '{"nam":"ada"}', base], capture_output=True, text=True,
                         timeout=15).stdout
    assert json.loads(out)["code"] == 3


def test_gzip_both_ways_and_encodings_refused_by_name(sluice):
    name = "x" * 5000
    body = gzip.compress(json.dumps({"name": name}).encode())
    status, headers, answer = post(sluice.http_port, "/hello.UserService/SayHi", body, {
        "Content-Type": "application/json", "Connect-Protocol-Version": "1", "Content-Encoding": "gzip",
        "Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(answer))["result"].startswith("hi " + name)
    status, headers, answer = post(sluice.http_port, "/hello.UserService/SayHi", b"{}", {
        "Content-Type": "application/json", "Connect-Protocol-Version": "1", "Content-Encoding": "br"})
    error = json.loads(answer)
    assert status == 501 and error["code"] == "unimplemented" and '"br"' in error["message"]
    # A gzip body that is not gzip: a clear error, not "bad JSON".
    status, headers, answer = post(sluice.http_port, "/hello.UserService/SayHi", b"not gzip", {
        "Content-Type": "application/json", "Connect-Protocol-Version": "1", "Content-Encoding": "gzip"})
    assert status == 500 and "gzip" in json.loads(answer)["message"]


def test_streaming_envelopes_by_hand(sluice, stubs):
    point = stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(name="n", value=1)).SerializeToString()
    body = struct.pack(">BI", 0, len(point)) + point
    compressed = gzip.compress(point)
    body += struct.pack(">BI", 1, len(compressed)) + compressed
    status, headers, answer = post(sluice.http_port, "/proto.StreamService/Record", body, {
        "Content-Type": "application/connect+proto", "Connect-Content-Encoding": "gzip"})
    assert status == 200 and headers["content-type"] == "application/connect+proto"
    flags, length = struct.unpack(">BI", answer[:5])
    assert flags == 0
    end_flags, end_length = struct.unpack(">BI", answer[5 + length:10 + length])
    assert end_flags == 2 and json.loads(answer[10 + length:10 + length + end_length]) == {}
    # An envelope flagged end-stream from the client is refused in the end-stream envelope.
    status, headers, answer = post(sluice.http_port, "/proto.StreamService/Record",
                                   struct.pack(">BI", 2, len(point)) + point,
                                   {"Content-Type": "application/connect+proto"})
    flags, length = struct.unpack(">BI", answer[:5])
    assert status == 200 and flags == 2
    assert json.loads(answer[5:5 + length])["error"]["code"] == "invalid_argument"
    # An unknown codec is a protocol error: 415.
    status, _, _ = post(sluice.http_port, "/proto.StreamService/Record", b"",
                        {"Content-Type": "application/connect+thrift"})
    assert status == 415


# MARK: - An upstream: rich errors, GET, metadata


def test_connect_reaches_an_upstream_with_details_get_and_metadata(lab, start_sluice):  # noqa: F811
    upstream = LabServer(lab)
    try:
        s = start_sluice("--upstream", f"{SERVICE}={upstream.address}", "--descriptor-set", str(lab.protoset))
        pb2 = lab.pb2
        fail = method(SERVICE, "Fail", pb2.FailRequest, pb2.Item, StreamType.UNARY)
        stats = method(SERVICE, "GetStats", pb2.StatsRequest, pb2.Stats, StreamType.UNARY,
                       IdempotencyLevel.NO_SIDE_EFFECTS)
        echo = method(SERVICE, "Echo", pb2.Item, pb2.EchoReply, StreamType.UNARY)
        with ConnectClientSync(f"http://127.0.0.1:{s.http_port}", codec=google_protobuf_binary_codec()) as client:
            with pytest.raises(ConnectError) as failure:
                client.execute_unary(request=pb2.FailRequest(code=5, message="with details: no widget"), method=fail)
            assert failure.value.code == Code.NOT_FOUND and failure.value.message == "with details: no widget"
            details = failure.value.details
            assert len(details) == 1 and details[0].type_name == "google.protobuf.StringValue"
            assert details[0].message_bytes == b"\n\x03why"  # StringValue("why"), as the upstream sent it
            reply = client.execute_unary(request=pb2.Item(name="w"), method=echo, headers={"x-note": "hello"})
            assert reply.item.name == "w" and reply.metadata["x-note"] == "hello"
            assert "connect-protocol-version" not in reply.metadata and "content-encoding" not in reply.metadata
            client.execute_unary(request=pb2.StatsRequest(), method=stats, use_get=True)
        # The GET by hand, and GET refused for a method with side effects.
        message = base64.urlsafe_b64encode(b"").decode()
        out = subprocess.run(["curl", "-s", "-i",
                              f"http://127.0.0.1:{s.http_port}/{SERVICE}/GetStats?connect=v1&encoding=json&message=%7B%7D"],
                             capture_output=True, text=True, timeout=15).stdout
        assert out.startswith("HTTP/1.1 200") and "sumRead" in out.partition("\n\n")[2]
        out = subprocess.run(["curl", "-s", "-i",
                              f"http://127.0.0.1:{s.http_port}/{SERVICE}/Echo?connect=v1&encoding=proto&base64=1&message={message}"],
                             capture_output=True, text=True, timeout=15).stdout
        assert out.startswith("HTTP/1.1 405") and "NO_SIDE_EFFECTS" in out
        # The upstream's trailers as trailer- headers; its status unchanged.
        status, headers, body = post(s.http_port, f"/{SERVICE}/Fail", b'{"code":9,"message":"nope"}', {
            "Content-Type": "application/json", "Connect-Protocol-Version": "1"})
        assert status == 400 and headers["trailer-x-upstream-trailer"] == "failed"
        assert json.loads(body) == {"code": "failed_precondition", "message": "nope"}
    finally:
        upstream.kill()


def test_metrics_count_connect_calls(start_sluice):
    s = start_sluice()
    post(s.http_port, "/hello.UserService/SayHi", b'{"name":"a"}',
         {"Content-Type": "application/json", "Connect-Protocol-Version": "1"})
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{s.http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert any('transport="connect"' in line and "sluice_rpcs_total" in line and 'code="ok"' in line
               for line in text.splitlines()), text


def test_connectrpc_grpc_web_mode(sluice, stubs):
    from connectrpc.protocol import ProtocolType

    methods = seed_methods(stubs)
    with ConnectClientSync(f"http://127.0.0.1:{sluice.http_port}", codec=google_protobuf_binary_codec(),
                           protocol=ProtocolType.GRPC_WEB) as client:
        reply = client.execute_unary(request=stubs.hello_pb2.Request(name="ada"), method=methods["SayHi"])
        assert reply.result.startswith("hi ada---")
        request = stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(value=1))
        assert len(list(client.execute_server_stream(request=request, method=methods["List"]))) == 7
        with pytest.raises(ConnectError) as failure:
            client.execute_unary(request=stubs.hello_pb2.Request(name="ada"), method=methods["Nope"])
        assert failure.value.code == Code.UNIMPLEMENTED


def test_connect_over_tls_on_both_ports(start_sluice, tmp_path):
    from conftest import make_pki

    pki = make_pki(tmp_path)
    s = start_sluice("--tls-cert", str(pki["chain"]), "--tls-key", str(pki["key"]))
    for port, version in ((s.grpc_port, "HTTP/2.0 200"), (s.http_port, "HTTP/1.1 200")):
        result = buf_curl(f"https://127.0.0.1:{port}/proto.StreamService/List", "--cacert", str(pki["ca"]), "-v",
                          data='{"pt":{"value":2}}')
        assert result.returncode == 0, result.stderr
        assert [m["pt"].get("value", 0) for m in json_stream(result.stdout)] == list(range(2, 9))
        assert version in result.stderr

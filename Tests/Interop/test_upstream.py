"""Sluice in front of a gRPC server it did not write: a Python grpcio server (upstream/lab_server.py,
with grpcio-reflection and grpcio-health-checking) hosting upstream.lab.Lab, reached through every
transport: grpcio via the native port, WebSocket/JSON (websockets, websocat) and HTTP JSON (curl).
Then the faults: an upstream killed mid-stream, one down at start, one of two addresses dead, one
that stops reading."""
import asyncio
import base64
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import websockets

HERE = Path(__file__).resolve().parent / "upstream"
SERVICE = "upstream.lab.Lab"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """lab.proto compiled by grpcio-tools: Python stubs and a FileDescriptorSet with its imports
    (google/api/annotations.proto from PyPI googleapis-common-protos among them)."""
    import grpc_tools
    from grpc_tools import protoc

    import google.api.annotations_pb2  # googleapis-common-protos: google/api/*.proto beside it

    out = tmp_path_factory.mktemp("lab")
    include = Path(grpc_tools.__file__).parent / "_proto"
    googleapis = Path(google.api.annotations_pb2.__file__).parents[2]
    descriptors = out / "lab.protoset"
    args = [
        "protoc", f"-I{HERE}", f"-I{include}", f"-I{googleapis}", f"--python_out={out}", f"--grpc_python_out={out}",
        "--include_imports", "--include_source_info", f"--descriptor_set_out={descriptors}", str(HERE / "lab.proto"),
    ]
    assert protoc.main(args) == 0, "grpcio-tools could not compile lab.proto"
    sys.path.insert(0, str(out))
    import lab_pb2, lab_pb2_grpc  # noqa: E401

    class Lab:
        pb2 = lab_pb2
        grpc = lab_pb2_grpc
        stubs = out
        protoset = descriptors

    return Lab


class LabServer:
    """upstream/lab_server.py on a loopback port."""

    def __init__(self, lab, port=None, name="lab", reflection="both", tls=None):
        self.port = port or free_port()
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "lab_server.py"), str(lab.stubs), str(self.port), "--name", name,
             "--reflection", reflection, *(["--tls", str(tls[0]), str(tls[1])] if tls else [])],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.process.stdout.readline()
        assert line.startswith("listening"), f"the lab server did not start: {line!r}"
        self.address = f"127.0.0.1:{self.port}"

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def lab_server(lab):
    servers = []

    def start(port=None, name="lab", reflection="both", tls=None):
        server = LabServer(lab, port, name, reflection, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(scope="module")
def upstream(lab):
    server = LabServer(lab)
    yield server
    server.kill()


@pytest.fixture(scope="module")
def gateway(lab, upstream):
    """Sluice hosting the seed and proxying upstream.lab.Lab, with its descriptors."""
    from conftest import Sluice

    s = Sluice("--upstream", f"{SERVICE}={upstream.address}", "--descriptor-set", str(lab.protoset))
    yield s
    s.close()


def item_json():
    return {
        "name": "widget", "count": "42", "mood": "GRUMPY", "tags": {"a": 1, "b": -2}, "text": "chosen",
        "when": "2026-11-30T12:00:00.250Z", "extra": {"k": [1, "two", None, True], "n": {"x": 1.5}},
        "notes": ["ü", "%"], "blob": base64.b64encode(b"\x00\xffbin").decode(),
    }


def check_item_json(item):
    expected = item_json()
    assert item == expected, item


# MARK: - native gRPC


def test_grpcio_reaches_every_kind_through_the_native_port(lab, gateway):
    pb2 = lab.pb2
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        stub = lab.grpc.LabStub(channel)
        item = pb2.Item(name="widget", count=7, mood=pb2.HAPPY, tags={"a": 1}, number=3, notes=["x"])
        reply, call = stub.Echo.with_call(item, metadata=(("x-custom", "v1"), ("x-data-bin", b"\x01\x02")), timeout=10)
        assert reply.item == item
        assert reply.metadata["x-custom"] == "v1"
        assert reply.metadata["x-data-bin"] == base64.b64encode(b"\x01\x02").decode().rstrip("=") or reply.metadata["x-data-bin"] == base64.b64encode(b"\x01\x02").decode()
        assert reply.metadata["x-forwarded-for"] == "127.0.0.1"
        assert reply.metadata["x-forwarded-proto"] == "http"
        assert reply.metadata["x-forwarded-host"] == gateway.grpc_target
        assert "sluice" in reply.metadata["user-agent"]
        assert ("x-upstream-initial", "lab") in call.initial_metadata()
        trailers = dict(call.trailing_metadata())
        assert trailers["x-upstream-trailer"] == "done"
        assert trailers["x-upstream-bin"] == b"\x00\x01\xfe"

        items = list(stub.Count(pb2.CountRequest(count=25), timeout=10))
        assert [i.count for i in items] == list(range(25))

        total = stub.Sum(iter([pb2.Item(count=n) for n in range(1, 101)]), timeout=10)
        assert (total.sum, total.items) == (5050, 100)

        replies = list(stub.Chat(iter([pb2.Item(name=f"m{n}") for n in range(10)]), timeout=10))
        assert [r.item.name for r in replies] == [f"m{n}" for n in range(10)]


def test_the_upstreams_status_and_message_come_back_unchanged(lab, gateway):
    message = "nope: ünïcode, 100% and\ta tab"
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        stub = lab.grpc.LabStub(channel)
        for code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAUTHENTICATED):
            with pytest.raises(grpc.RpcError) as failure:
                stub.Fail(lab.pb2.FailRequest(code=code.value[0], message=message), timeout=10)
            assert failure.value.code() == code
            assert failure.value.details() == message
            assert dict(failure.value.trailing_metadata())["x-upstream-trailer"] == "failed"


def test_the_native_port_proxies_without_descriptors(lab, upstream, start_sluice):
    s = start_sluice("--upstream", f"{SERVICE}={upstream.address}")
    with grpc.insecure_channel(s.grpc_target) as channel:
        stub = lab.grpc.LabStub(channel)
        assert stub.Echo(lab.pb2.Item(name="raw"), timeout=10).item.name == "raw"
        assert len(list(stub.Count(lab.pb2.CountRequest(count=5), timeout=10))) == 5
        assert stub.Sum(iter([lab.pb2.Item(count=2)] * 3), timeout=10).sum == 6
        assert len(list(stub.Chat(iter([lab.pb2.Item()] * 4), timeout=10))) == 4
        # The JSON front ends need descriptors: without them the method is unknown there.
    status, body = curl_json(s, f"/{SERVICE}/Echo", {"name": "x"})
    assert status == 501 and body["code"] == 12, body


def test_the_deadline_goes_upstream_shortened(lab, gateway):
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        stub = lab.grpc.LabStub(channel)
        reply = stub.Echo(lab.pb2.Item(), timeout=5)
        # grpc-core rounds the deadline it decodes by a few milliseconds.
        assert 3.5 < reply.time_remaining <= 5.05, reply.time_remaining
        assert stub.Echo(lab.pb2.Item(), timeout=60).time_remaining > 50
    frames = asyncio.run(ws_unary(gateway, "Echo", {"name": "t"}, first={"$timeoutMs": 2000}))
    reply = next(f for f in frames if "item" in f)
    assert 0.5 < reply["timeRemaining"] <= 2.05, frames


def test_hosted_services_and_unknown_services_are_unchanged(gateway, stubs):
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        reply = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="x"), timeout=10)
        assert reply.result
        with pytest.raises(grpc.RpcError) as failure:
            channel.unary_unary("/other.Service/Method")(b"", timeout=10)
        assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_wildcard_upstream_takes_every_service_not_hosted(lab, upstream, start_sluice, stubs):
    s = start_sluice("--upstream", f"*={upstream.address}", "--descriptor-set", str(lab.protoset))
    with grpc.insecure_channel(s.grpc_target) as channel:
        assert lab.grpc.LabStub(channel).Echo(lab.pb2.Item(name="w"), timeout=10).item.name == "w"
        # A service neither hosted nor known upstream: the upstream's own UNIMPLEMENTED.
        with pytest.raises(grpc.RpcError) as failure:
            channel.unary_unary("/other.Service/Method")(b"", timeout=10)
        assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # The seed is still hosted by Sluice.
        reply = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="x"), timeout=10)
        assert reply.result


def test_hosted_none_is_a_pure_proxy(lab, upstream, start_sluice, stubs):
    s = start_sluice("--hosted", "none", "--upstream", f"*={upstream.address}")
    with grpc.insecure_channel(s.grpc_target) as channel:
        assert lab.grpc.LabStub(channel).Echo(lab.pb2.Item(name="p"), timeout=10).item.name == "p"
        # The seed's services now go upstream too, which does not have them.
        with pytest.raises(grpc.RpcError) as failure:
            stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="x"), timeout=10)
        assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED


# MARK: - WebSocket/JSON


async def ws_unary(gateway, method, message, first=None, headers=None):
    """Opens a session, sends `first` (a control frame) and `message`, returns every frame."""
    frames = []
    async with websockets.connect(f"{gateway.ws}/{SERVICE}/{method}", additional_headers=headers or {}) as ws:
        if first:
            await ws.send(json.dumps(first))
        await ws.send(json.dumps(message))
        try:
            async for text in ws:
                frames.append(json.loads(text))
        except websockets.ConnectionClosed:
            pass  # an error's Close code (4000 + status)
    return frames


def test_websocket_json_reaches_every_kind(gateway):
    frames = asyncio.run(ws_unary(gateway, "Echo", item_json(), headers={"grpc-metadata-x-custom": "ws"}))
    headers, reply, end = frames
    assert headers == {"$headers": {"x-upstream-initial": ["lab"]}}, headers
    check_item_json(reply["item"])
    assert reply["metadata"]["x-custom"] == "ws"
    assert reply["metadata"]["x-forwarded-proto"] == "http"
    assert reply["metadata"]["x-forwarded-host"] == f"127.0.0.1:{gateway.http_port}"
    assert end["$end"]["code"] == 0
    assert end["$end"]["trailers"]["x-upstream-trailer"] == ["done"], end

    frames = asyncio.run(ws_unary(gateway, "Count", {"count": 5}))
    assert [f.get("count", "0") for f in frames[:-1]] == ["0", "1", "2", "3", "4"], frames
    assert frames[-1]["$end"]["code"] == 0

    async def stream_in():
        async with websockets.connect(f"{gateway.ws}/{SERVICE}/Sum") as ws:
            for n in range(1, 11):
                await ws.send(json.dumps({"count": n}))
            await ws.send(json.dumps({"$end": True}))
            return [json.loads(t) async for t in ws]

    frames = asyncio.run(stream_in())
    assert frames[0] == {"sum": "55", "items": 10} and frames[1]["$end"]["code"] == 0, frames

    async def chat():
        # Interactive: each reply arrives before the next message is sent.
        async with websockets.connect(f"{gateway.ws}/{SERVICE}/Chat") as ws:
            seen = []
            for n in range(5):
                await ws.send(json.dumps({"name": f"m{n}"}))
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if "$headers" not in frame:
                        break
                seen.append(frame["item"]["name"])
            await ws.send(json.dumps({"$end": True}))
            end = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return seen, end

    seen, end = asyncio.run(chat())
    assert seen == [f"m{n}" for n in range(5)] and end["$end"]["code"] == 0


def test_websocket_errors_keep_the_upstreams_status(gateway):
    frames = asyncio.run(ws_unary(gateway, "Fail", {"code": 9, "message": "precondition ü 50%"}))
    assert frames[-1]["$end"]["code"] == 9 and frames[-1]["$end"]["message"] == "precondition ü 50%", frames
    # A message the descriptors refuse never reaches the upstream.
    frames = asyncio.run(ws_unary(gateway, "Echo", {"mood": "SLEEPY"}))
    assert frames[-1]["$end"]["code"] == 3, frames


def test_websocat_reaches_the_upstream(gateway):
    out = subprocess.run(
        ["websocat", "-t", "--no-close", "-B", "1048576", f"{gateway.ws}/{SERVICE}/Echo"],
        input=json.dumps({"name": "from websocat"}) + "\n", capture_output=True, text=True, timeout=20,
    )
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert any(f.get("item", {}).get("name") == "from websocat" for f in lines), out
    assert lines[-1]["$end"]["code"] == 0


# MARK: - HTTP JSON


def curl_json(gateway, path, body, *extra):
    out = subprocess.run(
        ["curl", "-s", "-D", "-", "-H", "Content-Type: application/json", "-d", json.dumps(body), *extra,
         f"http://127.0.0.1:{gateway.http_port}{path}"],
        capture_output=True, timeout=20,
    )
    head, _, text = out.stdout.decode().partition("\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(text) if status != 200 or not text.startswith("{") else (json.loads(text), head)


ITEM_DETAIL = {"@type": "type.googleapis.com/upstream.lab.Item", "name": "detail", "count": "2",
               "mood": "MOOD_UNSPECIFIED", "tags": {}, "notes": [], "blob": ""}


def test_rich_error_details_reach_every_json_front_end(gateway):
    """An upstream's grpc-status-details-bin (a google.rpc.Status with two Anys) becomes the
    status's `details` on HTTP JSON and WebSocket: a type the descriptors have as its JSON, another
    as its bytes in base64; the trailers stay beside them."""
    request = {"code": 5, "message": "with details and an item"}
    status, reply = curl_json(gateway, f"/{SERVICE}/Fail", request)
    assert status == 404 and reply["code"] == 5 and reply["message"] == request["message"], reply
    assert reply["details"][1] == ITEM_DETAIL and reply["details"][0]["@type"].endswith("StringValue"), reply
    assert reply["trailers"]["x-upstream-trailer"] == ["failed"], reply
    frames = asyncio.run(ws_unary(gateway, "Fail", request))
    end = frames[-1]["$end"]
    assert end["code"] == 5 and end["details"] == reply["details"], frames


def test_curl_reaches_the_upstream(gateway):
    status, (reply, head) = curl_json(gateway, f"/{SERVICE}/Echo", item_json(), "-H", "grpc-metadata-x-custom: curl")
    assert status == 200
    check_item_json(reply["item"])
    assert reply["metadata"]["x-custom"] == "curl"
    assert "grpc-metadata-x-upstream-initial: lab" in head.lower()
    assert "grpc-metadata-x-upstream-trailer: done" in head.lower()

    out = subprocess.run(
        ["curl", "-s", "-N", "-d", json.dumps({"count": 4}), f"http://127.0.0.1:{gateway.http_port}/{SERVICE}/Count"],
        capture_output=True, text=True, timeout=20,
    )
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line.get("name") for line in lines[:-1]] == ["lab-0", "lab-1", "lab-2", "lab-3"], lines
    assert lines[-1]["$end"]["code"] == 0

    status, body = curl_json(gateway, f"/{SERVICE}/Fail", {"code": 5, "message": "gone"})
    assert status == 404 and body["code"] == 5 and body["message"] == "gone", body


def test_x_forwarded_for_is_appended_to(gateway):
    status, (reply, _) = curl_json(gateway, f"/{SERVICE}/Echo", {}, "-H", "X-Forwarded-For: 203.0.113.9")
    assert reply["metadata"]["x-forwarded-for"] == "203.0.113.9, 127.0.0.1", reply


# MARK: - Cancellation and faults


def stats(lab, gateway):
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        return lab.grpc.LabStub(channel).GetStats(lab.pb2.StatsRequest(), timeout=10)


def test_a_client_that_goes_away_cancels_upstream(lab, gateway):
    before = stats(lab, gateway).cancelled

    async def leave_early():
        async with websockets.connect(f"{gateway.ws}/{SERVICE}/Count") as ws:
            await ws.send(json.dumps({"count": 100000, "intervalMs": 10}))
            for _ in range(3):
                await ws.recv()
        # The socket closes here, mid-stream.

    asyncio.run(leave_early())
    deadline = time.monotonic() + 5
    while stats(lab, gateway).cancelled == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats(lab, gateway).cancelled > before, "the upstream stream was not cancelled"

    # The same from grpcio on the native port.
    before = stats(lab, gateway).cancelled
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        call = lab.grpc.LabStub(channel).Count(lab.pb2.CountRequest(count=100000, interval_ms=10), timeout=30)
        next(call)
        call.cancel()
    deadline = time.monotonic() + 5
    while stats(lab, gateway).cancelled == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats(lab, gateway).cancelled > before


def test_an_upstream_killed_mid_stream_ends_calls_with_unavailable(lab, lab_server, start_sluice):
    server = lab_server()
    s = start_sluice("--upstream", f"{SERVICE}={server.address}", "--descriptor-set", str(lab.protoset))

    async def websocket_stream():
        async with websockets.connect(f"{s.ws}/{SERVICE}/Count") as ws:
            await ws.send(json.dumps({"count": 100000, "intervalMs": 5}))
            await ws.recv()
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if "$end" in frame:
                    return frame

    with grpc.insecure_channel(s.grpc_target) as channel:
        call = lab.grpc.LabStub(channel).Count(lab.pb2.CountRequest(count=100000, interval_ms=5), timeout=60)
        next(call)
        loop = asyncio.new_event_loop()
        pending = loop.create_task(websocket_stream())
        loop.run_until_complete(asyncio.sleep(0.3))
        killed = time.monotonic()
        server.kill()
        with pytest.raises(grpc.RpcError) as failure:
            for _ in call:
                pass
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE, failure.value
        end = loop.run_until_complete(pending)
        loop.close()
        assert time.monotonic() - killed < 5
    assert end["$end"]["code"] == 14, end


def test_an_upstream_down_at_start_fails_clearly_then_serves_once_up(lab, lab_server, start_sluice):
    port = free_port()
    s = start_sluice("--upstream", f"{SERVICE}=127.0.0.1:{port}", "--descriptor-set", str(lab.protoset))
    with grpc.insecure_channel(s.grpc_target) as channel:
        stub = lab.grpc.LabStub(channel)
        with pytest.raises(grpc.RpcError) as failure:
            stub.Echo(lab.pb2.Item(), timeout=10)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert SERVICE in failure.value.details() and str(port) in failure.value.details(), failure.value.details()
        status, body = curl_json(s, f"/{SERVICE}/Echo", {})
        assert status == 503 and body["code"] == 14, body

        lab_server(port=port)
        deadline = time.monotonic() + 40
        while True:
            try:
                assert stub.Echo(lab.pb2.Item(name="up"), timeout=10).item.name == "up"
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                assert time.monotonic() < deadline, "the upstream was never used once it came up"
                time.sleep(0.2)
    status, (reply, _) = curl_json(s, f"/{SERVICE}/Echo", {"name": "http"})
    assert status == 200 and reply["item"]["name"] == "http"


def test_two_addresses_with_one_dead_lose_no_call(lab, lab_server, start_sluice):
    live = lab_server(name="live")
    dead = free_port()
    s = start_sluice(
        "--upstream", f"{SERVICE}=127.0.0.1:{dead},{live.address}", "--descriptor-set", str(lab.protoset))
    with grpc.insecure_channel(s.grpc_target) as channel:
        stub = lab.grpc.LabStub(channel)
        for n in range(60):
            assert stub.Echo(lab.pb2.Item(count=n), timeout=10).item.count == n
    for n in range(20):
        frames = asyncio.run(ws_unary(s, "Echo", {"count": str(n)}))
        assert frames[-1]["$end"]["code"] == 0, frames


def test_calls_spread_over_every_address(lab, lab_server, start_sluice):
    one, two = lab_server(name="one"), lab_server(name="two")
    s = start_sluice("--upstream", f"{SERVICE}={one.address},{two.address}", "--descriptor-set", str(lab.protoset))
    seen = set()
    for _ in range(20):
        frames = asyncio.run(ws_unary(s, "Echo", {}))
        seen.add(frames[0]["$headers"]["x-upstream-initial"][0])
    assert seen == {"one", "two"}, seen


def test_an_upstream_that_stops_reading_holds_the_client_back(lab, gateway):
    """SlowSum reads nothing for 8 s: the client's flood is held back by flow control end to end
    (HTTP/2 to the upstream, TCP to the WebSocket client), so Sluice's memory stays bounded."""
    before = gateway.rss_kib()
    payload = "x" * 16_000

    async def flood():
        sent = 0
        async with websockets.connect(f"{gateway.ws}/{SERVICE}/SlowSum", max_size=None) as ws:
            await ws.send(json.dumps({"count": 8000}))

            async def send_all():
                nonlocal sent
                message = json.dumps({"count": 1, "notes": [payload]})
                while sent < 4000:  # 64 MB offered
                    await ws.send(message)
                    sent += 1

            try:
                await asyncio.wait_for(send_all(), 4)
            except asyncio.TimeoutError:
                pass
            return sent

    sent = asyncio.run(flood())
    grown = gateway.rss_kib() - before
    print(f"upstream not reading: the client got {sent} of 4000 16-kB messages out; Sluice grew {grown} KiB")
    assert sent < 4000, "the client was never held back"
    assert grown < 24_000, f"Sluice grew by {grown} KiB while the upstream did not read"


def test_an_address_whose_health_check_says_not_serving_gets_no_calls(lab, lab_server, start_sluice):
    one, two = lab_server(name="one"), lab_server(name="two")
    s = start_sluice("--upstream", f"{SERVICE}={one.address},{two.address}", "--descriptor-set", str(lab.protoset))

    def names(count):
        return {asyncio.run(ws_unary(s, "Echo", {}))[0]["$headers"]["x-upstream-initial"][0] for _ in range(count)}

    assert names(10) == {"one", "two"}
    with grpc.insecure_channel(one.address) as channel:
        lab.grpc.LabStub(channel).SetHealth(lab.pb2.Item(name="NOT_SERVING"), timeout=10)
    assert s.wait_for_log("An upstream address is not serving", str(one.port), timeout=12), "".join(s.log)
    assert names(20) == {"two"}
    with grpc.insecure_channel(one.address) as channel:
        lab.grpc.LabStub(channel).SetHealth(lab.pb2.Item(name="SERVING"), timeout=10)
    assert s.wait_for_log("An upstream address is serving again", str(one.port), timeout=12), "".join(s.log)
    assert names(10) == {"one", "two"}


# MARK: - Reflection


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_upstream_reflection_gives_the_json_front_ends_their_descriptors(lab, lab_server, start_sluice, version):
    server = lab_server(reflection="both" if version == "v1" else "v1alpha")
    s = start_sluice("--upstream", f"{SERVICE}={server.address}", "--upstream-reflection")
    found = s.wait_for_log("Upstream reflection", f"sluice.reflection.version={version}")
    assert found and SERVICE in found[0], "".join(s.log)
    frames = asyncio.run(ws_unary(s, "Echo", item_json()))
    check_item_json(frames[1]["item"])
    status, (reply, _) = curl_json(s, f"/{SERVICE}/Echo", item_json())
    assert status == 200
    check_item_json(reply["item"])
    frames = asyncio.run(ws_unary(s, "Count", {"count": 3}))
    assert [f.get("name") for f in frames[:-1]] == ["lab-0", "lab-1", "lab-2"] and frames[-1]["$end"]["code"] == 0


def test_sighup_asks_the_upstreams_again(lab, lab_server, start_sluice):
    port = free_port()
    s = start_sluice("--upstream", f"*=127.0.0.1:{port}", "--upstream-reflection")
    assert s.wait_for_log("Upstream reflection failed"), "".join(s.log)
    status, body = curl_json(s, f"/{SERVICE}/Echo", {})
    assert status == 501 and body["code"] == 12, body
    lab_server(port=port)
    s.process.send_signal(signal.SIGHUP)
    assert s.wait_for_log("Upstream reflection", "sluice.reflection.services="), "".join(s.log)
    status, (reply, _) = curl_json(s, f"/{SERVICE}/Echo", {"name": "reloaded"})
    assert status == 200 and reply["item"]["name"] == "reloaded"
    # The wildcard route took every service the upstream lists, health included.
    found = s.log_lines("Upstream reflection", "sluice.reflection.services=")[-1]
    assert "grpc.health.v1.Health" in found and SERVICE in found, found


# MARK: - The grpc-go server of the benchmarks, TLS, a slow reader


@pytest.fixture(scope="module")
def grpc_go():
    """The benchmarks' grpc-go server (scripts/build-go-peers.sh builds it; scripts/test.sh runs
    that first), with grpc-go's reflection (v1alpha) and health services."""
    from conftest import ROOT

    binary = ROOT / ".build-bench" / "bin" / "grpcserver"
    assert binary.exists(), f"{binary} is missing: run scripts/build-go-peers.sh"
    port = free_port()
    process = subprocess.Popen([str(binary), "--port", str(port), "--reflection"], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, "grpcserver did not start"
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    process.kill()
    process.wait()


@pytest.mark.parametrize("descriptors", ["descriptor-set", "reflection"])
def test_the_grpc_go_server_through_every_transport(grpc_go, start_sluice, stubs, descriptors):
    from conftest import ROOT

    flags = ["--descriptor-set", str(ROOT / "Protos" / "sluice.binpb")] if descriptors == "descriptor-set" \
        else ["--upstream-reflection"]
    s = start_sluice("--hosted", "none", "--upstream", f"*={grpc_go}", *flags)
    if descriptors == "reflection":
        found = s.log_lines("Upstream reflection", "sluice.reflection.version=v1alpha")
        assert found and "proto.StreamService" in found[0] and "hello.UserService" in found[0], "".join(s.log)
    stream = stubs.stream_pb2
    with grpc.insecure_channel(s.grpc_target) as channel:
        hello = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="go"), timeout=10)
        assert hello.result.startswith("hi go---")
        streams = stubs.stream_pb2_grpc.StreamServiceStub(channel)
        listed = list(streams.List(stream.StreamRequest(pt=stream.StreamPoint(name="a", value=10)), timeout=10))
        assert [r.pt.value for r in listed] == list(range(10, 17))
        record = streams.Record(iter([stream.StreamRequest(pt=stream.StreamPoint(value=n)) for n in range(3)]), timeout=10)
        assert record.pt.name == "gRPC Stream Server: Record"
        routed = list(streams.Route(iter([stream.StreamRequest() for _ in range(4)]), timeout=10))
        assert [r.pt.value for r in routed] == [0, 1, 2, 3]

    async def websocket():
        async with websockets.connect(f"{s.ws}/proto.StreamService/Route") as ws:
            replies = []
            for n in range(3):
                await ws.send(json.dumps({"pt": {"name": f"r{n}"}}))
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                while "$headers" in frame:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                replies.append(frame["pt"]["value"])
            await ws.send(json.dumps({"$end": True}))
            end = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return replies, end

    replies, end = asyncio.run(websocket())
    assert replies == [0, 1, 2] and end["$end"]["code"] == 0, (replies, end)
    status, (reply, _) = curl_json(s, "/hello.UserService/SayHi", {"name": "curl"})
    assert status == 200 and reply["result"].startswith("hi curl---")
    out = subprocess.run(
        ["curl", "-s", "-N", "-d", '{"pt":{"name":"n","value":1}}', f"http://127.0.0.1:{s.http_port}/proto.StreamService/List"],
        capture_output=True, text=True, timeout=20,
    )
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["pt"]["value"] for line in lines[:-1]] == list(range(1, 8)) and lines[-1]["$end"]["code"] == 0, lines


def test_tls_to_the_upstream(lab, lab_server, start_sluice, tmp_path):
    from conftest import make_pki

    pki = make_pki(tmp_path)
    server = lab_server(tls=(pki["chain"], pki["key"]))
    # Verified against the test CA, for the name in the address.
    s = start_sluice("--upstream", f"{SERVICE}=localhost:{server.port}", "--upstream-tls", "--upstream-ca",
                     str(pki["ca"]), "--descriptor-set", str(lab.protoset))
    with grpc.insecure_channel(s.grpc_target) as channel:
        assert lab.grpc.LabStub(channel).Echo(lab.pb2.Item(name="tls"), timeout=10).item.name == "tls"
    frames = asyncio.run(ws_unary(s, "Echo", {"name": "tls"}))
    assert frames[1]["item"]["name"] == "tls" and frames[1]["metadata"]["x-forwarded-proto"] == "http", frames
    # An IP address, verified for the name given by --upstream-server-name.
    s = start_sluice("--upstream", f"{SERVICE}=127.0.0.1:{server.port}", "--upstream-tls", "--upstream-ca",
                     str(pki["ca"]), "--upstream-server-name", "localhost")
    with grpc.insecure_channel(s.grpc_target) as channel:
        assert lab.grpc.LabStub(channel).Echo(lab.pb2.Item(name="sni"), timeout=10).item.name == "sni"
    # Not trusted (the system's roots): the call fails with UNAVAILABLE naming the upstream.
    s = start_sluice("--upstream", f"{SERVICE}=localhost:{server.port}", "--upstream-tls")
    with grpc.insecure_channel(s.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as failure:
            lab.grpc.LabStub(channel).Echo(lab.pb2.Item(), timeout=10)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE, failure.value
        assert SERVICE in failure.value.details(), failure.value.details()


def test_a_slow_websocket_reader_slows_the_upstream(lab, lab_server, start_sluice):
    """Count offers 3,000 messages of 16 kB (48 MB) to a client that reads one and then nothing for
    3 s: HTTP/2 flow control stops the upstream (its generator blocks), and Sluice holds a bounded
    amount; then the client reads everything."""
    server = lab_server()
    s = start_sluice("--upstream", f"{SERVICE}={server.address}", "--descriptor-set", str(lab.protoset))
    before = s.rss_kib()

    async def slow():
        async with websockets.connect(f"{s.ws}/{SERVICE}/Count", max_size=None) as ws:
            await ws.send(json.dumps({"count": 3000, "payloadBytes": 16000}))
            await ws.recv()
            await asyncio.sleep(3)
            with grpc.insecure_channel(server.address) as channel:
                sent = lab.grpc.LabStub(channel).GetStats(lab.pb2.StatsRequest(), timeout=10).count_sent
            grown = s.rss_kib() - before
            frames = [json.loads(t) async for t in ws]
            return sent, grown, frames

    sent, grown, frames = asyncio.run(slow())
    print(f"slow reader: the upstream had sent {sent} of 3000 16-kB messages after 3 s; Sluice grew {grown} KiB")
    assert sent < 3000, "the upstream was never held back"
    assert grown < 24_000, f"Sluice grew by {grown} KiB for a client that did not read"
    assert sum(1 for f in frames if "name" in f) == 3000 - 1 and frames[-1]["$end"]["code"] == 0

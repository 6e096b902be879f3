"""A `connectrpc` Python server (PyPI connectrpc's ASGI application under hypercorn, h2c) as the
upstream, so the backend is not grpcio: Sluice reaches it over gRPC and serves its methods to every
client protocol. Clients we did not write: grpcio (native gRPC), connectrpc (Connect, proto and
JSON), sonora (gRPC-Web over HTTP/1.1), `buf curl` (gRPC-Web over h2c, for bidi), websockets
(WebSocket/JSON) and curl (HTTP JSON, NDJSON). What the server answers is described in
upstream/connect_server.py."""
import asyncio
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import sonora.client
import websockets
from connectrpc.client import ConnectClientSync
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError

from conftest import json_stream
from test_connect import seed_methods
from test_upstream import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture(scope="module")
def connect_upstream(stubs):
    port = free_port()
    stubs_dir = str(Path(stubs.hello_pb2.__file__).parent)
    process = subprocess.Popen([sys.executable, str(HERE / "upstream" / "connect_server.py"), str(port), stubs_dir],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    assert line.startswith("listening"), f"the connectrpc server did not start: {line!r}"
    yield f"127.0.0.1:{port}"
    process.kill()
    process.wait()


@pytest.fixture
def gateway(start_sluice, connect_upstream):
    return start_sluice("--hosted", "none", "--upstream", f"hello.UserService={connect_upstream}",
                        "--upstream", f"proto.StreamService={connect_upstream}",
                        "--descriptor-set", str(ROOT / "Protos" / "sluice.binpb"))


def points(stubs, *values):
    return [stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(name=f"p{v}", value=v)) for v in values]


def test_native_grpc_reaches_every_kind_with_metadata(gateway, stubs):
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        hello = stubs.hello_pb2_grpc.UserServiceStub(channel)
        reply, call = hello.SayHi.with_call(stubs.hello_pb2.Request(name="ada"), timeout=10)
        assert reply.result == "hi ada from connect"
        assert ("x-upstream", "connectrpc") in call.initial_metadata()
        assert ("x-upstream-trailer", "connectrpc") in call.trailing_metadata()
        stream = stubs.stream_pb2_grpc.StreamServiceStub(channel)
        assert [m.pt.name for m in stream.List(stubs.stream_pb2.StreamRequest(), timeout=10)] == [
            f"connect-{i}" for i in range(5)]
        total = stream.Record(iter(points(stubs, 1, 2, 3, 4)), timeout=10)
        assert (total.pt.name, total.pt.value) == ("4 points", 10)
        assert [m.pt.value for m in stream.Route(iter(points(stubs, 1, 2, 3)), timeout=10)] == [2, 4, 6]
        with pytest.raises(grpc.RpcError) as failure:
            hello.SayHi(stubs.hello_pb2.Request(name="fail"), timeout=10)
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT and failure.value.details() == "no fail"
        # A failure after the first message: the message arrives, then the upstream's status.
        received = []
        with pytest.raises(grpc.RpcError) as failure:
            for message in stream.List(stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(value=99)),
                                       timeout=10):
                received.append(message.pt.name)
        assert received == ["connect-0"] and failure.value.code() == grpc.StatusCode.ABORTED


@pytest.mark.parametrize("codec", ["proto", "json"])
def test_connect_clients_reach_the_connect_server_through_sluice(gateway, stubs, codec):
    methods = seed_methods(stubs)
    chosen = google_protobuf_binary_codec() if codec == "proto" else google_protobuf_json_codec()
    with ConnectClientSync(f"http://127.0.0.1:{gateway.http_port}", codec=chosen) as client:
        reply = client.execute_unary(request=stubs.hello_pb2.Request(name="ada"), method=methods["SayHi"])
        assert reply.result == "hi ada from connect"
        names = [m.pt.name for m in client.execute_server_stream(request=stubs.stream_pb2.StreamRequest(),
                                                                   method=methods["List"])]
        assert names == [f"connect-{i}" for i in range(5)]
        total = client.execute_client_stream(request=iter(points(stubs, 5, 6)), method=methods["Record"])
        assert (total.pt.name, total.pt.value) == ("2 points", 11)
        with pytest.raises(ConnectError) as failure:
            client.execute_unary(request=stubs.hello_pb2.Request(name="fail"), method=methods["SayHi"])
        assert failure.value.code == Code.INVALID_ARGUMENT and failure.value.message == "no fail"
        with pytest.raises(ConnectError) as failure:
            list(client.execute_server_stream(
                request=stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(value=99)),
                method=methods["List"]))
        assert failure.value.code == Code.ABORTED and failure.value.message == "stopped"


def test_grpc_web_clients_reach_the_connect_server_through_sluice(gateway, stubs):
    with sonora.client.insecure_web_channel(f"http://127.0.0.1:{gateway.http_port}") as channel:
        say_hi = channel.unary_unary("/hello.UserService/SayHi", stubs.hello_pb2.Request.SerializeToString,
                                     stubs.hello_pb2.Response.FromString)
        assert say_hi(stubs.hello_pb2.Request(name="ada"), timeout=10).result == "hi ada from connect"
        listing = channel.unary_stream("/proto.StreamService/List", stubs.stream_pb2.StreamRequest.SerializeToString,
                                       stubs.stream_pb2.StreamResponse.FromString)
        assert [m.pt.value for m in listing(stubs.stream_pb2.StreamRequest(), timeout=10)] == [0, 1, 2, 3, 4]
    # Bidi over gRPC-Web needs HTTP/2: buf curl on the native port (h2c).
    out = subprocess.run(
        ["buf", "curl", "--protocol", "grpcweb", "--http2-prior-knowledge", "--schema", str(ROOT / "Protos"),
         "-d", '{"pt":{"name":"a","value":1}} {"pt":{"name":"b","value":2}}',
         f"http://{gateway.grpc_target}/proto.StreamService/Route"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert [m["pt"]["value"] for m in json_stream(out.stdout)] == [2, 4]


def test_websocket_and_http_json_reach_the_connect_server_through_sluice(gateway):
    async def route():
        async with websockets.connect(f"{gateway.ws}/proto.StreamService/Route") as ws:
            seen = []
            for value in (3, 4):
                await ws.send(json.dumps({"pt": {"name": "w", "value": value}}))
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if "$headers" not in frame:
                        break
                seen.append(frame["pt"]["value"])
            await ws.send(json.dumps({"$end": True}))
            end = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return seen, end

    seen, end = asyncio.run(route())
    assert seen == [6, 8] and end["$end"]["code"] == 0, (seen, end)

    out = subprocess.run(["curl", "-s", "-H", "Accept: application/x-ndjson", "-d", "{}",
                          f"http://127.0.0.1:{gateway.http_port}/proto.StreamService/List"],
                         capture_output=True, text=True, timeout=15).stdout
    lines = [json.loads(line) for line in out.splitlines() if line]
    assert [line["pt"]["name"] for line in lines[:-1]] == [f"connect-{i}" for i in range(5)], out
    out = subprocess.run(["curl", "-s", "-d", '{"name":"fail"}',
                          f"http://127.0.0.1:{gateway.http_port}/hello.UserService/SayHi"],
                         capture_output=True, text=True, timeout=15).stdout
    assert json.loads(out)["code"] == 3 and json.loads(out)["message"] == "no fail", out

"""Hostile upstreams (issue 25): what an upstream sends is untrusted input too. Each case is an
HTTP/2 server of the `h2` library that pretends to serve upstream.lab.Lab and misbehaves one way:
an HPACK bomb (a header list of megabytes, a few bytes each on the wire), a header list just over
the limit, a message larger than `--max-message-bytes`, a message flagged compressed in a
response without `grpc-encoding`, a response whose status follows half a message, a response that
never ends, and a GOAWAY after every request. Through each transport (native gRPC with grpcio, WebSocket/JSON, HTTP JSON),
the call fails with a clear status, the gateway stays up and bounded in memory, and a well-behaved
upstream next to it keeps working; `sluice call` and `sluice list` aimed straight at the
server refuse what it sends the same way. Broken descriptors by reflection are in test_descriptors.py's
neighbours (the codec's validation tests and the descriptor fuzzer)."""
import asyncio
import json
import socket
import subprocess
import threading

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
import websockets

from test_upstream import SERVICE, free_port, lab, upstream  # noqa: F401  (fixtures)

MODES = ["bomb", "big-headers", "giant-message", "unannounced-gzip", "cut-message", "never-ends", "goaway"]


class HostileUpstream:
    """One misbehaving HTTP/2 server on a loopback port (see the module's docstring)."""

    def __init__(self, mode):
        self.mode = mode
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.open = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.open.append(sock)
            threading.Thread(target=self.serve, args=(sock,), daemon=True).start()

    def respond(self, conn, sid):
        ok = [(":status", "200"), ("content-type", "application/grpc")]
        if self.mode == "bomb":
            conn.send_headers(sid, ok + [("x-bomb", "A" * 4000)] * 2000)  # 8 MB decoded
            conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        elif self.mode == "big-headers":
            conn.send_headers(sid, ok + [("x-big", "B" * 70_000)])  # just over 64 KiB
            conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        elif self.mode == "giant-message":
            conn.send_headers(sid, ok)
            # A message announced at 1 GiB, then as much of it as the windows take.
            conn.send_data(sid, b"\x00" + (1 << 30).to_bytes(4, "big") + b"\x0a" * 16_000)
        elif self.mode == "unannounced-gzip":
            # A message flagged compressed in a response without grpc-encoding, then an OK status.
            conn.send_headers(sid, ok)
            conn.send_data(sid, b"\x01" + (3).to_bytes(4, "big") + b"\x0a\x01x")
            conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        elif self.mode == "cut-message":
            # Half a message, then an OK status: the message is lost, so OK cannot stand.
            conn.send_headers(sid, ok)
            conn.send_data(sid, b"\x00" + (100).to_bytes(4, "big") + b"\x0a" * 40)
            conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        elif self.mode == "never-ends":
            conn.send_headers(sid, ok)  # and nothing more
        elif self.mode == "goaway":
            conn.close_connection(error_code=0, additional_data=b"storm", last_stream_id=0)

    def serve(self, sock):
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, validate_outbound_headers=False))
        conn.initiate_connection()
        try:
            sock.sendall(conn.data_to_send())
            while data := sock.recv(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        self.respond(conn, event.stream_id)
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                sock.sendall(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            pass
        finally:
            sock.close()

    def close(self):
        self.listener.close()
        for sock in self.open:
            try:
                sock.close()
            except OSError:
                pass


EXPECTED = {  # mode: (gRPC status, words the message has)
    "bomb": (grpc.StatusCode.INTERNAL, "response headers are over the limit"),
    "big-headers": (grpc.StatusCode.INTERNAL, "response headers are over the limit"),
    "giant-message": (grpc.StatusCode.INTERNAL, "response message of 1073741824 bytes is over the limit"),
    "unannounced-gzip": (grpc.StatusCode.INTERNAL, "marked compressed but the response has no grpc-encoding"),
    "cut-message": (grpc.StatusCode.INTERNAL, "the response ended inside a message"),
    "never-ends": (grpc.StatusCode.DEADLINE_EXCEEDED, ""),
    "goaway": (grpc.StatusCode.UNAVAILABLE, ""),
}


@pytest.fixture
def hostile(request):
    server = HostileUpstream(request.param)
    yield server
    server.close()


def gateway(start_sluice, lab, hostile, upstream):  # noqa: F811
    # upstream.lab.Lab's methods go to the hostile server; grpc.health.v1.Health's (a well-behaved
    # upstream, the lab server) must keep working beside it.
    return start_sluice("--hosted", "none", "--upstream", f"{SERVICE}=127.0.0.1:{hostile.port}",
                        "--upstream", f"grpc.health.v1.Health={upstream.address}",
                        "--descriptor-set", str(lab.protoset), "--max-message-bytes", str(1 << 20))


def still_serving(s):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(s.grpc_target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("hostile", MODES, indirect=True)
def test_grpcio_through_a_hostile_upstream(hostile, lab, upstream, start_sluice):  # noqa: F811
    s = gateway(start_sluice, lab, hostile, upstream)
    before = s.rss_kib()
    peak = before
    code, words = EXPECTED[hostile.mode]
    with grpc.insecure_channel(s.grpc_target) as channel:
        for _ in range(10):
            with pytest.raises(grpc.RpcError) as e:
                lab.grpc.LabStub(channel).Echo(lab.pb2.Item(name="x"), timeout=2)
            assert e.value.code() == code, (hostile.mode, e.value)
            assert words in (e.value.details() or ""), (hostile.mode, e.value.details())
            peak = max(peak, s.rss_kib())
    still_serving(s)
    assert s.process.poll() is None
    assert peak - before < 64 * 1024, f"{hostile.mode}: RSS {before} KiB, peak {peak} KiB"


@pytest.mark.parametrize("hostile", MODES, indirect=True)
def test_json_front_ends_through_a_hostile_upstream(hostile, lab, upstream, start_sluice):  # noqa: F811
    s = gateway(start_sluice, lab, hostile, upstream)
    code, words = EXPECTED[hostile.mode]
    number = code.value[0]

    async def ws():
        async with websockets.connect(f"{s.ws}/{SERVICE}/Echo",
                                      additional_headers={"grpc-timeout": "2S"}) as socket_:
            await socket_.send(json.dumps({"name": "x"}))
            while True:
                frame = json.loads(await asyncio.wait_for(socket_.recv(), 15))
                if "$end" in frame:
                    return frame["$end"]

    end = asyncio.run(ws())
    assert end["code"] == number and words in end.get("message", ""), (hostile.mode, end)
    out = subprocess.run(
        ["curl", "-sS", "-H", "content-type: application/json", "-H", "grpc-timeout: 2S", "-d", '{"name":"x"}',
         f"http://127.0.0.1:{s.http_port}/{SERVICE}/Echo"], capture_output=True, text=True, timeout=30)
    body = json.loads(out.stdout)
    assert body["code"] == number and words in body.get("message", ""), (hostile.mode, body)
    still_serving(s)


# --- broken descriptors by reflection ----------------------------------------------------------

def broken_file(kind):
    """A FileDescriptorProto for bad.proto (message bad.M, service bad.Service/Call) broken one
    way: a field number of Int32.max, a negative one, or a oneof_index out of range."""
    from google.protobuf import descriptor_pb2

    f = descriptor_pb2.FileDescriptorProto(name="bad.proto", package="bad", syntax="proto3")
    m = f.message_type.add(name="M")
    field = m.field.add(name="f", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
                        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, json_name="f")
    if kind == "int32-max":
        field.number = 2**31 - 1
    elif kind == "negative":
        field.number = -5
    elif kind == "oneof-index":
        m.oneof_decl.add(name="choice")
        field.oneof_index = 7
    service = f.service.add(name="Service")
    service.method.add(name="Call", input_type=".bad.M", output_type=".bad.M")
    return f.SerializeToString()


class BrokenReflection:
    """A grpcio server whose v1alpha reflection (grpc-go's kind) lists bad.Service and answers
    every file request with `broken_file(kind)`."""

    def __init__(self, kind):
        from concurrent import futures
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        data = broken_file(kind)

        class Servicer(reflection_pb2_grpc.ServerReflectionServicer):
            def ServerReflectionInfo(self, requests, context):
                for request in requests:
                    reply = reflection_pb2.ServerReflectionResponse(valid_host=request.host, original_request=request)
                    if request.HasField("list_services"):
                        reply.list_services_response.service.add(name="bad.Service")
                    else:
                        reply.file_descriptor_response.file_descriptor_proto.append(data)
                    yield reply

        self.port = free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(Servicer(), self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()


@pytest.mark.parametrize("kind", ["int32-max", "negative", "oneof-index"])
def test_broken_descriptors_by_reflection_are_refused_and_the_gateway_serves_on(kind, start_sluice, stubs):
    import os
    import time

    from conftest import ROOT

    broken = BrokenReflection(kind)
    try:
        s = start_sluice("--upstream", f"bad.Service=127.0.0.1:{broken.port}", "--upstream-reflection")
        time.sleep(1)
        assert s.process.poll() is None, "".join(s.log)  # e61c11d: trapped (exit 132)
        refused = s.wait_for_log("bad.proto")
        assert refused and ("\"f\"" in refused[0] or "oneof" in refused[0]), "".join(s.log)
        with grpc.insecure_channel(s.grpc_target) as channel:  # the hosted services go on
            reply = stubs.hello_pb2_grpc.UserServiceStub(channel).SayHi(stubs.hello_pb2.Request(name="a"), timeout=10)
            assert reply.result.startswith("hi a---")
        binary = os.environ.get("SLUICE_BIN") or str(ROOT / ".build" / "release" / "sluice")
        listed = subprocess.run([binary, "list", f"127.0.0.1:{broken.port}"], capture_output=True, text=True,
                                timeout=30, env=dict(os.environ, SWIFT_BACKTRACE="enable=no"))
        assert listed.returncode == 3, (listed.returncode, listed.stderr)  # INVALID_ARGUMENT, not a trap
        assert "bad.proto" in listed.stderr, listed.stderr
    finally:
        broken.server.stop(None)


# --- sluice call and sluice list straight at a hostile server -----------------------------------

@pytest.mark.parametrize("hostile", ["unannounced-gzip", "cut-message"], indirect=True)
def test_sluice_call_and_list_refuse_a_hostile_servers_response(hostile, lab):  # noqa: F811
    # `sluice call --via grpc` (its own client call) and `sluice list` (its reflection client) read
    # the same responses the gateway does, and must not report the server's OK over a lost message.
    from test_cli import sluice_cli

    _, words = EXPECTED[hostile.mode]
    target = f"127.0.0.1:{hostile.port}"
    called = sluice_cli("call", "--descriptor-set", str(lab.protoset), target, f"{SERVICE}/Echo",
                        "-d", '{"name":"x"}', "--timeout", "5s")
    assert called.returncode == 13 and called.stdout == "", called
    assert called.stderr.startswith("INTERNAL: ") and words in called.stderr, called
    listed = sluice_cli("list", target)
    assert listed.returncode == 13 and listed.stdout == "", listed
    assert listed.stderr.startswith("INTERNAL: ") and words in listed.stderr, listed

"""grpc.health.v1 and server reflection (v1 and v1alpha), checked with the clients operators use:
grpcio-health-checking's stub and grpcio-reflection's ProtoReflectionDescriptorDatabase, plus the
JSON paths (websockets, curl) and nghttp's raw HTTP/2. Then the upstream side: a proxied service is
listed, described and health-checked through the gateway, and follows its upstream's health."""
import asyncio
import json
import signal
import struct
import subprocess
import threading
import time

import grpc
import pytest
import websockets
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from test_upstream import SERVICE, LabServer, lab  # noqa: F401  (lab is a fixture)

HOSTED = [
    "DataService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection", "hello.UserService", "proto.StreamService",
]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def reflect(target, requests, version="v1"):
    """Sends v1alpha-typed requests (the wire format is v1's too) on one reflection stream of
    `version`; returns the responses."""
    with grpc.insecure_channel(target) as channel:
        call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        return list(call(iter(requests), timeout=10))


def described_services(target):
    """Every listed service and its methods (name, input, output), as grpcio-reflection's
    descriptor database and a protobuf DescriptorPool resolve them."""
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = DescriptorPool(database)
        services = database.get_services()
        return {
            name: [(m.name, m.input_type.full_name, m.output_type.full_name) for m in pool.FindServiceByName(name).methods]
            for name in services
        }


# MARK: - health


def test_health_check_and_list_with_grpcio_health_checking(sluice):
    with grpc.insecure_channel(sluice.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ["", *HOSTED]:
            assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == SERVING, service
        with pytest.raises(grpc.RpcError) as failure:
            health.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=5)
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND and "no.Such" in failure.value.details()
        listed = health.List(health_pb2.HealthListRequest(), timeout=5).statuses
        assert {name: value.status for name, value in listed.items()} == {s: SERVING for s in ["", *HOSTED]}


def test_health_watch_of_an_unknown_service_stays_open(sluice):
    with grpc.insecure_channel(sluice.grpc_target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="no.Such"), timeout=2)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        with pytest.raises(grpc.RpcError) as ended:
            next(watch)
        # Nothing more came and the call was still open when the client's own deadline passed.
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_health_through_the_json_paths(sluice):
    out = subprocess.run(
        ["curl", "-s", "-X", "POST", "-H", "Content-Type: application/json", "-d", '{"service":"proto.StreamService"}',
         f"http://127.0.0.1:{sluice.http_port}/grpc.health.v1.Health/Check"],
        capture_output=True, timeout=10,
    )
    assert json.loads(out.stdout) == {"status": "SERVING"}, out
    out = subprocess.run(
        ["curl", "-s", "-X", "POST", "-d", "{}", f"http://127.0.0.1:{sluice.http_port}/grpc.health.v1.Health/List"],
        capture_output=True, timeout=10,
    )
    assert set(json.loads(out.stdout)["statuses"]) == {"", *HOSTED}, out


def test_health_check_over_nghttp_raw_http2(sluice, tmp_path):
    body = tmp_path / "request"
    message = health_pb2.HealthCheckRequest(service="hello.UserService").SerializeToString()
    body.write_bytes(struct.pack(">BI", 0, len(message)) + message)
    out = subprocess.run(
        ["nghttp", "-v", "-H", ":method: POST", "-H", "content-type: application/grpc", "-H", "te: trailers",
         "-d", str(body), f"http://{sluice.grpc_target}/grpc.health.v1.Health/Check"],
        capture_output=True, timeout=10,
    )
    assert b"grpc-status: 0" in out.stdout, out.stdout
    # The DATA frame's payload: a 5-byte prefix and HealthCheckResponse{status: SERVING} (08 01).
    assert b"\x00\x00\x00\x00\x02\x08\x01" in out.stdout, out.stdout


def test_health_watch_sees_not_serving_when_a_graceful_shutdown_starts(start_sluice):
    s = start_sluice("--drain-timeout", "5")
    seen = []
    ends = []
    opened = threading.Event()

    def watch_native():
        with grpc.insecure_channel(s.grpc_target) as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
            try:
                for response in call:
                    seen.append(("grpc", response.status))
                    opened.set()
            except grpc.RpcError as error:
                ends.append(("grpc", error.code()))

    async def watch_websocket():
        async with websockets.connect(f"{s.ws}/grpc.health.v1.Health/Watch") as ws:
            await ws.send(json.dumps({"service": "proto.StreamService"}))
            async for frame in ws:
                message = json.loads(frame)
                if "$end" in message:
                    ends.append(("ws", message["$end"]["code"]))
                    break
                seen.append(("ws", message["status"]))
                if message["status"] == "SERVING":
                    assert opened.wait(10), "the native Watch did not start"
                    s.process.send_signal(signal.SIGTERM)

    thread = threading.Thread(target=watch_native)
    thread.start()
    asyncio.run(asyncio.wait_for(watch_websocket(), 20))
    thread.join(20)
    assert seen.count(("grpc", SERVING)) == 1 and ("grpc", NOT_SERVING) in seen, seen
    assert seen.index(("grpc", SERVING)) < seen.index(("grpc", NOT_SERVING))
    assert [m for m in seen if m[0] == "ws"] == [("ws", "SERVING"), ("ws", "NOT_SERVING")], seen
    # The drain then ends the streams: UNAVAILABLE, as every stream cut short by a shutdown.
    assert sorted(ends, key=str) == [("grpc", grpc.StatusCode.UNAVAILABLE), ("ws", 14)], ends
    assert s.process.wait(15) == 0


def test_health_answers_without_the_bearer_token_and_reflection_does_not(start_sluice, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("sesame\n")
    s = start_sluice("--require-bearer", f"file:{tokens}")
    with grpc.insecure_channel(s.grpc_target) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert check.status == SERVING
    with pytest.raises(grpc.RpcError) as refused:
        reflect(s.grpc_target, [reflection_pb2.ServerReflectionRequest(list_services="")])
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


# MARK: - reflection


def test_reflection_lists_and_describes_every_hosted_service(sluice):
    services = described_services(sluice.grpc_target)
    assert sorted(services) == HOSTED
    assert services["proto.StreamService"] == [
        ("List", "proto.StreamRequest", "proto.StreamResponse"),
        ("Record", "proto.StreamRequest", "proto.StreamResponse"),
        ("Route", "proto.StreamRequest", "proto.StreamResponse"),
    ]
    assert services["hello.UserService"] == [("SayHi", "hello.Request", "hello.Response")]
    assert services["grpc.health.v1.Health"][1] == (
        "List", "grpc.health.v1.HealthListRequest", "grpc.health.v1.HealthListResponse")


def test_reflection_v1_answers_every_kind_of_request(sluice):
    R = reflection_pb2.ServerReflectionRequest
    requests = [
        R(list_services=""),
        R(file_containing_symbol="proto.StreamService.Route"),
        R(file_containing_symbol="proto.StreamRequest"),
        R(file_by_filename="hello.proto"),
        R(file_containing_symbol="no.Such"),
        R(all_extension_numbers_of_type="proto.StreamRequest"),
        R(file_containing_extension=reflection_pb2.ExtensionRequest(containing_type="proto.StreamRequest", extension_number=9)),
        R(),
    ]
    answers = reflect(sluice.grpc_target, requests)
    assert [s.name for s in answers[0].list_services_response.service] == HOSTED
    names = []
    for answer in answers[1:4]:
        files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in answer.file_descriptor_response.file_descriptor_proto]
        names.append([f.name for f in files])
    assert names[0][0] == "stream.proto" and names[1] == ["stream.proto"] and names[2][0] == "hello.proto", names
    assert answers[4].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "no.Such" in answers[4].error_response.error_message
    assert answers[5].all_extension_numbers_response.base_type_name == "proto.StreamRequest"
    assert list(answers[5].all_extension_numbers_response.extension_number) == []
    assert answers[6].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert answers[7].error_response.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [a.original_request for a in answers] == requests


def test_reflection_through_a_websocket(sluice):
    async def run():
        async with websockets.connect(f"{sluice.ws}/grpc.reflection.v1.ServerReflection/ServerReflectionInfo") as ws:
            await ws.send(json.dumps({"listServices": ""}))
            listed = json.loads(await ws.recv())
            await ws.send(json.dumps({"fileContainingSymbol": "hello.UserService"}))
            described = json.loads(await ws.recv())
            await ws.send(json.dumps({"$end": True}))
            return listed, described, json.loads(await ws.recv())

    listed, described, end = asyncio.run(asyncio.wait_for(run(), 10))
    assert [s["name"] for s in listed["listServicesResponse"]["service"]] == HOSTED
    import base64
    first = described["fileDescriptorResponse"]["fileDescriptorProto"][0]
    assert descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(first)).name == "hello.proto"
    assert end == {"$end": {"code": 0}}


# MARK: - upstream services


def test_upstream_services_are_described_and_follow_their_upstreams_health(lab, start_sluice):  # noqa: F811
    upstream = LabServer(lab)
    try:
        s = start_sluice("--upstream", f"{SERVICE}={upstream.address}", "--upstream-reflection")
        services = described_services(s.grpc_target)
        assert sorted(services) == sorted([*HOSTED, SERVICE])
        assert ("Echo", "upstream.lab.Item", "upstream.lab.EchoReply") in services[SERVICE]
        with grpc.insecure_channel(s.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=40)
            assert next(watch).status == SERVING
            assert health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5).status == SERVING
            with grpc.insecure_channel(upstream.address) as direct:
                lab.grpc.LabStub(direct).SetHealth(lab.pb2.Item(name="NOT_SERVING"), timeout=10)
            # The gateway asks its upstream every 5 s.
            assert next(watch).status == NOT_SERVING
            assert health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5).status == NOT_SERVING
            assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == SERVING
            with grpc.insecure_channel(upstream.address) as direct:
                lab.grpc.LabStub(direct).SetHealth(lab.pb2.Item(name="SERVING"), timeout=10)
            assert next(watch).status == SERVING
            upstream.kill()
            started = time.monotonic()
            assert next(watch).status == NOT_SERVING
            assert time.monotonic() - started < 12
            watch.cancel()
    finally:
        upstream.kill()


def test_shutdown_delay_keeps_serving_with_health_not_serving_before_the_drain(start_sluice, stubs):
    s = start_sluice("--shutdown-delay", "5", "--drain-timeout", "5")
    with grpc.insecure_channel(s.grpc_target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == SERVING
        s.process.send_signal(signal.SIGTERM)
        assert next(watch).status == NOT_SERVING
        # A load balancer still sending during the delay is served: a new connection, a new call.
        with grpc.insecure_channel(s.grpc_target) as fresh:
            reply = stubs.hello_pb2_grpc.UserServiceStub(fresh).SayHi(stubs.hello_pb2.Request(name="late"), timeout=5)
        assert reply.result.startswith("hi late---")
        out = subprocess.run(["curl", "-s", "-d", '{"name":"late"}', f"http://127.0.0.1:{s.http_port}/hello.UserService/SayHi"],
                             capture_output=True, timeout=5)
        assert json.loads(out.stdout)["result"].startswith("hi late---"), out
        assert s.wait_for_log("still serving until the shutdown delay has passed")
        with pytest.raises(grpc.RpcError) as ended:
            next(watch)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert s.process.wait(20) == 0

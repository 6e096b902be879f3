"""`sluice call`, `sluice list` and `sluice describe`, run as a user runs them: the sluice binary
against a running gateway over each --via (native gRPC, WebSocket/JSON, HTTP JSON), and against a
gRPC server we did not write (grpcio, with grpcio-reflection), through reflection and through
--descriptor-set. Output is read from the real stdout and stderr; the exit code is the status."""
import json
import os
import select
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from conftest import Sluice
from test_upstream import SERVICE, LabServer, lab  # noqa: F401  (lab is a fixture)

BINARY = str(Path(os.environ.get("SLUICE_BIN") or Path(__file__).resolve().parents[2] / ".build/release/sluice").resolve())
ENV = dict(os.environ, SWIFT_BACKTRACE="enable=no")
VIAS = ["grpc", "ws", "http"]
HOSTED = [
    "DataService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection", "hello.UserService", "proto.StreamService",
]


def sluice_cli(*args, stdin=None, timeout=30):
    return subprocess.run([BINARY, *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=ENV)


def address(gateway, via):
    return gateway.grpc_target if via == "grpc" else f"127.0.0.1:{gateway.http_port}"


def lines(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def gateway():
    s = Sluice("--echo-metadata")
    yield s
    s.close()


# MARK: - list and describe


def test_list_and_describe_through_reflection(gateway):
    listed = sluice_cli("list", gateway.grpc_target)
    assert listed.returncode == 0 and listed.stdout.split() == HOSTED, listed
    methods = sluice_cli("list", gateway.grpc_target, "proto.StreamService")
    assert methods.stdout.split() == ["proto.StreamService.List", "proto.StreamService.Record", "proto.StreamService.Route"]
    service = sluice_cli("describe", gateway.grpc_target, "proto.StreamService")
    assert service.returncode == 0, service
    assert "rpc List ( .proto.StreamRequest ) returns ( stream .proto.StreamResponse );" in service.stdout
    assert "rpc Route ( stream .proto.StreamRequest ) returns ( stream .proto.StreamResponse );" in service.stdout
    message = sluice_cli("describe", gateway.grpc_target, "grpc.health.v1.HealthListResponse")
    assert "map<string, .grpc.health.v1.HealthCheckResponse> statuses = 1;" in message.stdout, message
    enum = sluice_cli("describe", gateway.grpc_target, "grpc.health.v1.HealthCheckResponse.ServingStatus")
    assert "NOT_SERVING = 2;" in enum.stdout, enum
    missing = sluice_cli("describe", gateway.grpc_target, "no.Such")
    assert missing.returncode == 5 and missing.stderr.strip() == "NOT_FOUND: no symbol no.Such", missing
    unknown_service = sluice_cli("list", gateway.grpc_target, "no.Such")
    assert unknown_service.returncode == 5, unknown_service


def test_list_of_a_server_that_is_not_there_is_unavailable():
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = sluice_cli("list", f"127.0.0.1:{port}")
    assert out.returncode == 14 and out.stderr.startswith("UNAVAILABLE: "), out


# MARK: - call, every kind over every --via


@pytest.mark.parametrize("via", VIAS)
def test_call_reaches_every_kind(gateway, via):
    target = address(gateway, via)
    unary = sluice_cli("call", "--via", via, target, "hello.UserService/SayHi", "-d", '{"name":"ada"}')
    assert unary.returncode == 0 and unary.stderr == "OK\n", unary
    assert lines(unary.stdout)[0]["result"].startswith("hi ada---"), unary
    listed = sluice_cli("call", "--via", via, target, "proto.StreamService/List", "-d", '{"pt":{"name":"a","value":3}}')
    assert [m["pt"]["value"] for m in lines(listed.stdout)] == list(range(3, 10)), listed
    assert listed.returncode == 0
    # Record from stdin, one message per line; the end of input is the half-close.
    record = sluice_cli("call", "--via", via, target, "proto.StreamService/Record",
                        stdin='{"pt":{"name":"x"}}\n\n{"pt":{"name":"y"}}\n')
    assert lines(record.stdout) == [{"pt": {"name": "gRPC Stream Server: Record", "value": 1}}], record
    # Bidirectional from -d with one message per line (grpcurl's style), and the dotted method name.
    data = sluice_cli("call", "--via", via, target, "DataService.BidirectionalStream", "-d", '{"data":"x"}\n{"data":"y"}')
    assert lines(data.stdout) == [{"result": "processed: x"}, {"result": "processed: y"}], data
    assert data.returncode == 0


@pytest.mark.parametrize("via", VIAS)
def test_an_interactive_route_answers_each_line_before_the_next_is_written(gateway, via):
    process = subprocess.Popen(
        [BINARY, "call", "--via", via, address(gateway, via), "proto.StreamService/Route"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )
    try:
        for n in range(3):
            process.stdin.write(b'{"pt":{"name":"line %d"}}\n' % n)
            process.stdin.flush()
            # The next line is written only once this one's answer has been read from the pipe.
            ready, _, _ = select.select([process.stdout], [], [], 10)
            assert ready, f"no answer to line {n} while stdin stayed open"
            assert json.loads(process.stdout.readline()) == {"pt": {"name": "gRPC Stream Server: Route", "value": n}}
        process.stdin.close()
        assert process.wait(10) == 0
        assert process.stdout.read() == b"" and process.stderr.read() == b"OK\n"
    finally:
        process.kill()


@pytest.mark.parametrize("via", VIAS)
def test_metadata_goes_with_the_call_and_verbose_shows_what_came_back(gateway, via):
    out = sluice_cli("call", "--via", via, address(gateway, via), "hello.UserService/SayHi", "-d", '{"name":"m"}',
                     "-H", "x-team: blue", "-H", "X-Trace-Id:  42 ", "-v")
    assert out.returncode == 0, out
    # --echo-metadata: the gateway's response headers repeat what the service received.
    assert "headers: echo-x-team: blue" in out.stderr, out.stderr
    assert "headers: echo-x-trace-id: 42" in out.stderr, out.stderr


@pytest.mark.parametrize("via", VIAS)
def test_errors_are_the_exit_code_and_the_status_goes_to_stderr(gateway, via):
    target = address(gateway, via)
    unknown_field = sluice_cli("call", "--via", via, target, "hello.UserService/SayHi", "-d", '{"nope":1}')
    assert unknown_field.returncode == 3, unknown_field
    assert unknown_field.stderr.startswith("INVALID_ARGUMENT: ") and "nope" in unknown_field.stderr
    assert unknown_field.stdout == ""
    unknown_method = sluice_cli("call", "--via", via, target, "no.Such/Thing", "-d", "{}")
    assert unknown_method.returncode == 12 and unknown_method.stderr.startswith("UNIMPLEMENTED: "), unknown_method
    bad_json = sluice_cli("call", "--via", via, target, "hello.UserService/SayHi", "-d", '{"name":')
    assert bad_json.returncode == 3, bad_json


@pytest.mark.parametrize("via", VIAS)
def test_timeout_ends_a_slow_stream_with_deadline_exceeded(start_sluice, via):
    slow = start_sluice("--pace-ms", "400")
    out = sluice_cli("call", "--via", via, address(slow, via), "proto.StreamService/List", "-d", '{"pt":{"value":1}}',
                     "--timeout", "1s")
    assert out.returncode == 4 and out.stderr.startswith("DEADLINE_EXCEEDED"), out
    values = [m["pt"]["value"] for m in lines(out.stdout)]
    assert 1 <= len(values) < 7 and values == list(range(1, 1 + len(values))), out


@pytest.mark.parametrize("via", VIAS)
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(start_sluice, via):
    """`sluice call … | head -1`: SwiftNIO ignores SIGPIPE, so the next write to the closed pipe fails
    with EPIPE. The command ends at once with 141 (what a shell shows for a process SIGPIPE ended),
    without a trap or a backtrace, and the gateway goes on serving."""
    slow = start_sluice("--pace-ms", "20", "--list-count", "1000")
    proc = subprocess.Popen([BINARY, "call", "--via", via, address(slow, via), "proto.StreamService/List", "-d",
                             '{"pt":{"value":1}}'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    first = json.loads(proc.stdout.readline())
    assert first["pt"]["value"] == 1, first
    proc.stdout.close()
    try:
        code = proc.wait(timeout=15)
    finally:
        proc.kill()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert code == 141 and stderr == "", (code, stderr)
    again = sluice_cli("call", "--via", via, address(slow, via), "hello.UserService/SayHi", "-d", '{"name":"ada"}')
    assert again.returncode == 0 and lines(again.stdout)[0]["result"].startswith("hi ada"), again


@pytest.mark.parametrize("via", VIAS)
def test_a_refused_connection_is_unavailable(via):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = sluice_cli("call", "--via", via, "--timeout", "20s", f"127.0.0.1:{port}", "hello.UserService/SayHi",
                     "-d", '{"name":"ada"}')
    assert out.returncode == 14 and out.stderr.startswith("UNAVAILABLE: "), out


@pytest.mark.parametrize("via", ["ws", "http"])
def test_timeout_ends_a_call_to_a_server_that_never_answers(via):
    """A server that accepts the connection and says nothing: the gateway's grpc-timeout never
    reaches anyone, so the command keeps --timeout itself and ends with DEADLINE_EXCEEDED."""
    import socket
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        out = sluice_cli("call", "--via", via, "--timeout", "1s", f"127.0.0.1:{port}", "hello.UserService/SayHi",
                         "-d", '{"name":"ada"}')
    assert out.returncode == 4 and out.stderr.startswith("DEADLINE_EXCEEDED: no status within --timeout"), out


def test_bad_flags_are_usage_errors(gateway):
    out = sluice_cli("call", gateway.grpc_target, "hello.UserService/SayHi", "-H", "no colon", "-d", "{}")
    assert out.returncode == 64 and "is not 'key: value'" in out.stderr, out
    out = sluice_cli("call", gateway.grpc_target, "hello.UserService/SayHi", "--timeout", "soon", "-d", "{}")
    assert out.returncode == 64 and "--timeout" in out.stderr, out
    out = sluice_cli("call", "nowhere", "hello.UserService/SayHi", "-d", "{}")
    assert out.returncode == 64 and "is not HOST:PORT" in out.stderr, out


# MARK: - a gRPC server we did not write


def test_call_list_and_describe_a_grpcio_server_directly(lab):  # noqa: F811
    server = LabServer(lab, reflection="v1alpha")
    try:
        listed = sluice_cli("list", server.address)
        assert SERVICE in listed.stdout.split() and "grpc.health.v1.Health" in listed.stdout.split(), listed
        described = sluice_cli("describe", server.address, "upstream.lab.Item")
        assert "map<string, int32> tags = 4;" in described.stdout, described
        assert "oneof choice {" in described.stdout and "repeated string notes = 9;" in described.stdout
        echo = sluice_cli("call", server.address, f"{SERVICE}/Echo", "-d", '{"name":"w","count":"7","mood":"HAPPY"}',
                          "-H", "x-who: cli", "-v")
        reply = lines(echo.stdout)[0]
        assert echo.returncode == 0 and reply["item"]["count"] == "7" and reply["item"]["mood"] == "HAPPY", echo
        assert reply["metadata"]["x-who"] == "cli"
        assert "trailers: x-upstream-trailer: done" in echo.stderr, echo.stderr
        # The same with the descriptors from a file instead of reflection.
        filed = sluice_cli("call", "--descriptor-set", str(lab.protoset), server.address, f"{SERVICE}/Chat",
                           stdin='{"name":"a"}\n{"name":"b"}\n')
        assert [m["item"]["name"] for m in lines(filed.stdout)] == ["a", "b"] and filed.returncode == 0, filed
        failed = sluice_cli("call", server.address, f"{SERVICE}/Fail", "-d", '{"code":9,"message":"not now ü"}')
        assert failed.returncode == 9 and failed.stderr == "FAILED_PRECONDITION: not now ü\n", failed
    finally:
        server.kill()


def test_tls_on_every_via_and_for_reflection(start_sluice, tmp_path):
    from conftest import make_pki

    pki = make_pki(tmp_path)
    s = start_sluice("--tls-cert", str(pki["chain"]), "--tls-key", str(pki["key"]))
    trust = ["--tls", "--ca", str(pki["ca"])]
    for via in VIAS:
        out = sluice_cli("call", "--via", via, *trust, address(s, via), "hello.UserService/SayHi", "-d", '{"name":"tls"}')
        assert out.returncode == 0 and lines(out.stdout)[0]["result"].startswith("hi tls---"), (via, out)
    listed = sluice_cli("list", *trust, s.grpc_target)
    assert listed.stdout.split() == HOSTED, listed
    # The system's roots do not know the test CA: the server is not trusted.
    for via in VIAS:
        untrusted = sluice_cli("call", "--via", via, "--tls", address(s, via), "hello.UserService/SayHi", "-d", "{}")
        assert untrusted.returncode == 14 and untrusted.stderr.startswith("UNAVAILABLE"), (via, untrusted)


def test_list_and_describe_from_a_descriptor_set_need_no_server(lab):  # noqa: F811
    # Nothing listens on port 9: the descriptors come from the file alone.
    listed = sluice_cli("list", "--descriptor-set", str(lab.protoset), "127.0.0.1:9")
    assert listed.returncode == 0 and listed.stdout.split() == [SERVICE], listed
    methods = sluice_cli("list", "--descriptor-set", str(lab.protoset), "127.0.0.1:9", SERVICE)
    assert f"{SERVICE}.Chat" in methods.stdout.split() and f"{SERVICE}.Echo" in methods.stdout.split(), methods
    method = sluice_cli("describe", "--descriptor-set", str(lab.protoset), "127.0.0.1:9", f"{SERVICE}.Chat")
    assert method.stdout == (
        f"{SERVICE}.Chat is a method:\nrpc Chat ( stream .upstream.lab.Item ) returns ( stream .upstream.lab.EchoReply );\n"
    ), method
    enum = sluice_cli("describe", "--descriptor-set", str(lab.protoset), "127.0.0.1:9", "upstream.lab.Mood")
    assert "GRUMPY = 2;" in enum.stdout, enum

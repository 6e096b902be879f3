"""`sluice call`, `sluice list` and `sluice describe`, run as a user runs them: the sluice binary
against a running gateway over each --via (native gRPC, WebSocket/JSON, HTTP JSON), and against a
gRPC server we did not write (grpcio, with grpcio-reflection), through reflection and through
--descriptor-set. Output is read from the real stdout and stderr; the exit code is the status."""
import http.server
import json
import os
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from conftest import Sluice
from test_upstream import SERVICE, LabServer, lab  # noqa: F401  (lab is a fixture)

BINARY = str(Path(os.environ.get("SLUICE_BIN") or Path(__file__).resolve().parents[2] / ".build/release/sluice").resolve())
ENV = dict(os.environ, SWIFT_BACKTRACE="enable=no")
VIAS = ["grpc", "ws", "http", "ws-mux"]


def via_args(via):
    """`--via` for a test parameter: "ws-mux" is --via ws --mux (one stream of a multiplexed session)."""
    return ["--via", "ws", "--mux"] if via == "ws-mux" else ["--via", via]
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
    unary = sluice_cli("call", *via_args(via), target, "hello.UserService/SayHi", "-d", '{"name":"ada"}')
    assert unary.returncode == 0 and unary.stderr == "OK\n", unary
    assert lines(unary.stdout)[0]["result"].startswith("hi ada---"), unary
    listed = sluice_cli("call", *via_args(via), target, "proto.StreamService/List", "-d", '{"pt":{"name":"a","value":3}}')
    assert [m["pt"]["value"] for m in lines(listed.stdout)] == list(range(3, 10)), listed
    assert listed.returncode == 0
    # Record from stdin, one message per line; the end of input is the half-close.
    record = sluice_cli("call", *via_args(via), target, "proto.StreamService/Record",
                        stdin='{"pt":{"name":"x"}}\n\n{"pt":{"name":"y"}}\n')
    assert lines(record.stdout) == [{"pt": {"name": "gRPC Stream Server: Record", "value": 1}}], record
    # Bidirectional from -d with one message per line (grpcurl's style), and the dotted method name.
    data = sluice_cli("call", *via_args(via), target, "DataService.BidirectionalStream", "-d", '{"data":"x"}\n{"data":"y"}')
    assert lines(data.stdout) == [{"result": "processed: x"}, {"result": "processed: y"}], data
    assert data.returncode == 0


@pytest.mark.parametrize("via", VIAS)
def test_an_interactive_route_answers_each_line_before_the_next_is_written(gateway, via):
    process = subprocess.Popen(
        [BINARY, "call", *via_args(via), address(gateway, via), "proto.StreamService/Route"],
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
    out = sluice_cli("call", *via_args(via), address(gateway, via), "hello.UserService/SayHi", "-d", '{"name":"m"}',
                     "-H", "x-team: blue", "-H", "X-Trace-Id:  42 ", "-v")
    assert out.returncode == 0, out
    # --echo-metadata: the gateway's response headers repeat what the service received.
    assert "headers: echo-x-team: blue" in out.stderr, out.stderr
    assert "headers: echo-x-trace-id: 42" in out.stderr, out.stderr


@pytest.mark.parametrize("via", VIAS)
def test_errors_are_the_exit_code_and_the_status_goes_to_stderr(gateway, via):
    target = address(gateway, via)
    unknown_field = sluice_cli("call", *via_args(via), target, "hello.UserService/SayHi", "-d", '{"nope":1}')
    assert unknown_field.returncode == 3, unknown_field
    assert unknown_field.stderr.startswith("INVALID_ARGUMENT: ") and "nope" in unknown_field.stderr
    assert unknown_field.stdout == ""
    unknown_method = sluice_cli("call", *via_args(via), target, "no.Such/Thing", "-d", "{}")
    assert unknown_method.returncode == 12 and unknown_method.stderr.startswith("UNIMPLEMENTED: "), unknown_method
    bad_json = sluice_cli("call", *via_args(via), target, "hello.UserService/SayHi", "-d", '{"name":')
    assert bad_json.returncode == 3, bad_json


@pytest.mark.parametrize("via", VIAS)
def test_timeout_ends_a_slow_stream_with_deadline_exceeded(start_sluice, via):
    slow = start_sluice("--pace-ms", "400")
    out = sluice_cli("call", *via_args(via), address(slow, via), "proto.StreamService/List", "-d", '{"pt":{"value":1}}',
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
    proc = subprocess.Popen([BINARY, "call", *via_args(via), address(slow, via), "proto.StreamService/List", "-d",
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
    again = sluice_cli("call", *via_args(via), address(slow, via), "hello.UserService/SayHi", "-d", '{"name":"ada"}')
    assert again.returncode == 0 and lines(again.stdout)[0]["result"].startswith("hi ada"), again


@pytest.mark.parametrize("via", VIAS)
def test_a_refused_connection_is_unavailable(via):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = sluice_cli("call", *via_args(via), "--timeout", "20s", f"127.0.0.1:{port}", "hello.UserService/SayHi",
                     "-d", '{"name":"ada"}')
    assert out.returncode == 14 and out.stderr.startswith("UNAVAILABLE: "), out


@pytest.mark.parametrize("via", ["ws", "http", "ws-mux"])
def test_timeout_ends_a_call_to_a_server_that_never_answers(via):
    """A server that accepts the connection and says nothing: the gateway's grpc-timeout never
    reaches anyone, so the command keeps --timeout itself and ends with DEADLINE_EXCEEDED."""
    import socket
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        out = sluice_cli("call", *via_args(via), "--timeout", "1s", f"127.0.0.1:{port}", "hello.UserService/SayHi",
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
        out = sluice_cli("call", *via_args(via), *trust, address(s, via), "hello.UserService/SayHi", "-d", '{"name":"tls"}')
        assert out.returncode == 0 and lines(out.stdout)[0]["result"].startswith("hi tls---"), (via, out)
    listed = sluice_cli("list", *trust, s.grpc_target)
    assert listed.stdout.split() == HOSTED, listed
    # The system's roots do not know the test CA: the server is not trusted.
    for via in VIAS:
        untrusted = sluice_cli("call", *via_args(via), "--tls", address(s, via), "hello.UserService/SayHi", "-d", "{}")
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


# MARK: - a hostile server: what it sends reaches the terminal escaped

ESC, BEL, DEL, CSI = "\x1b", "\x07", "\x7f", "\x9b"
# Never on stdout or stderr as they are: ESC, BEL (ends an OSC), CR, DEL, and C1's CSI in UTF-8.
RAW_CONTROLS = [b"\x1b", b"\x07", b"\r", b"\x7f", b"\xc2\x9b"]
SHADY = f"evil.{ESC}[31mShady"
NOTE = f"evil.{ESC}]0;owned{BEL}Note"
FAILURE = f"{ESC}[31mred{ESC}]0;owned{BEL} {DEL}{CSI}2J\nOK"
ECHOED = f"{ESC}[31m {DEL} {CSI}2J \t end"


def raw_cli(*args, timeout=30):
    """sluice_cli with stdout and stderr as bytes (text mode would turn a raw CR into a newline)."""
    out = subprocess.run([BINARY, *args], capture_output=True, timeout=timeout, env=ENV)
    for stream in (out.stdout, out.stderr):
        assert not [c for c in RAW_CONTROLS if c in stream], out
    return subprocess.CompletedProcess(out.args, out.returncode, out.stdout.decode(), out.stderr.decode())


def hostile_files():
    """evil.Hostile (Fail and Echo, of evil.Msg); and a file whose service, method, message and field
    names hold escape sequences, which the client refuses to load (names must be identifiers)."""
    from google.protobuf import descriptor_pb2

    string = descriptor_pb2.FieldDescriptorProto
    sane = descriptor_pb2.FileDescriptorProto(name="hostile.proto", package="evil", syntax="proto3")
    sane.message_type.add(name="Msg").field.add(
        name="text", json_name="text", number=1, type=string.TYPE_STRING, label=string.LABEL_OPTIONAL)
    service = sane.service.add(name="Hostile")
    for method in ("Fail", "Echo"):
        service.method.add(name=method, input_type=".evil.Msg", output_type=".evil.Msg")
    shady = descriptor_pb2.FileDescriptorProto(
        name="shady.proto", package="evil", syntax="proto3", dependency=["hostile.proto"])
    shady.message_type.add(name=NOTE.removeprefix("evil.")).field.add(
        name=f"x{ESC}[2J", json_name="x", number=1, type=string.TYPE_STRING, label=string.LABEL_OPTIONAL)
    shady.service.add(name=SHADY.removeprefix("evil.")).method.add(
        name=f"Go{ESC}[5m", input_type=".evil.Msg", output_type="." + NOTE)
    return sane, shady


def protoset(path, *files):
    from google.protobuf import descriptor_pb2

    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=files).SerializeToString())
    return str(path)


def msg(text):
    """An evil.Msg, serialized by hand: field 1, a string."""
    data = text.encode()
    assert len(data) < 128
    return bytes([0x0A, len(data)]) + data


@pytest.fixture(scope="module")
def hostile():
    """A grpcio server whose reflection lists a service name with an escape sequence (and describes
    only evil.Hostile), whose evil.Hostile/Fail fails with escape sequences in its status message,
    and whose Echo answers with control characters in a string (the JSON codec escapes C0 but leaves
    DEL and C1, as JSON allows)."""
    from concurrent import futures

    from grpc_reflection.v1alpha import reflection_pb2

    sane, _ = hostile_files()
    by_symbol = {"evil.Hostile": [sane]}
    by_name = {"hostile.proto": sane}

    def reflection(requests, context):
        for request in requests:
            response = reflection_pb2.ServerReflectionResponse(original_request=request)
            kind = request.WhichOneof("message_request")
            if kind == "list_services":
                for name in ("evil.Hostile", SHADY):
                    response.list_services_response.service.add(name=name)
            elif kind == "file_containing_symbol" and request.file_containing_symbol in by_symbol:
                files = by_symbol[request.file_containing_symbol]
                response.file_descriptor_response.file_descriptor_proto.extend(f.SerializeToString() for f in files)
            elif kind == "file_by_filename" and request.file_by_filename in by_name:
                response.file_descriptor_response.file_descriptor_proto.append(
                    by_name[request.file_by_filename].SerializeToString())
            else:
                response.error_response.error_code = grpc.StatusCode.NOT_FOUND.value[0]
            yield response

    def fail(request, context):
        context.abort(grpc.StatusCode.PERMISSION_DENIED, FAILURE)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler("evil.Hostile", {
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
            "Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: msg(ECHOED)),
        }),
        *(grpc.method_handlers_generic_handler(f"grpc.reflection.{version}.ServerReflection", {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                reflection, request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString),
        }) for version in ("v1", "v1alpha")),
    ])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    server.address = f"127.0.0.1:{port}"
    yield server
    server.stop(None)


def test_names_from_a_hostile_server_are_escaped(hostile, tmp_path):
    listed = raw_cli("list", hostile.address)
    assert listed.returncode == 0 and sorted(listed.stdout.split()) == ["evil.Hostile", "evil.\\u001b[31mShady"], listed
    methods = raw_cli("list", hostile.address, SHADY)
    assert methods.returncode == 5 and methods.stderr == "NOT_FOUND: no service evil.\\u001b[31mShady\n", methods
    described = raw_cli("describe", hostile.address, "evil.Hostile")
    assert "rpc Fail ( .evil.Msg ) returns ( .evil.Msg );" in described.stdout, described
    # Descriptors whose names are not identifiers do not load; the error names them, escaped.
    shady = protoset(tmp_path / "shady.protoset", *hostile_files())
    refused = raw_cli("describe", "--descriptor-set", shady, "127.0.0.1:9", SHADY)
    assert refused.returncode == 3 and "the descriptors do not load" in refused.stderr, refused
    assert "\\u001b" in refused.stderr or "\\u{1B}" in refused.stderr, refused


def test_a_hostile_servers_status_message_and_json_are_escaped(hostile):
    failed = raw_cli("call", hostile.address, "evil.Hostile/Fail", "-d", "{}", "-v")
    assert failed.returncode == 7, failed
    assert failed.stderr.endswith(
        "PERMISSION_DENIED: \\u001b[31mred\\u001b]0;owned\\u0007 \\u007f\\u009b2J\\u000aOK\n"), failed
    # JSON lines escape them in JSON's own way: the line still parses to the server's text.
    echoed = raw_cli("call", hostile.address, "evil.Hostile/Echo", "-d", '{"text":"hi"}')
    assert echoed.returncode == 0 and lines(echoed.stdout) == [{"text": ECHOED}], echoed


class RawGRPCServer:
    """A gRPC server written on h2: grpcio's core refuses to send control characters in metadata,
    which HTTP/2 allows (RFC 9113 forbids only NUL, CR and LF) and a hostile server sends. Every
    call gets response headers and trailers with escape sequences in their values."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(connection,), daemon=True).start()

    def serve(self, connection):
        import h2.config
        import h2.connection
        import h2.events

        config = h2.config.H2Configuration(
            client_side=False, validate_outbound_headers=False, normalize_outbound_headers=False)
        session = h2.connection.H2Connection(config=config)
        session.initiate_connection()
        with connection:
            connection.sendall(session.data_to_send())
            while data := connection.recv(65536):
                for event in session.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        session.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        session.send_headers(event.stream_id, [
                            (":status", "200"), ("content-type", "application/grpc"),
                            ("x-evil-header", f"{ESC}[31mheader{DEL}{CSI}"),
                            (b"x-\xff\xfename", b"v"),  # a name no HTTP/2 header may have
                        ])
                        session.send_headers(event.stream_id, [
                            ("grpc-status", "7"), ("grpc-message", "%1B%5B31mdenied"),
                            ("x-evil-trailer", f"{ESC}]0;owned{BEL}"),
                        ], end_stream=True)
                connection.sendall(session.data_to_send())

    def close(self):
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


def test_headers_and_trailers_from_a_hostile_server_are_escaped(tmp_path):
    descriptors = protoset(tmp_path / "hostile.protoset", hostile_files()[0])
    server = RawGRPCServer()
    try:
        out = raw_cli("call", "--descriptor-set", descriptors, server.address, "evil.Hostile/Fail", "-d", "{}", "-v")
    finally:
        server.close()
    assert out.returncode == 7, out
    assert "headers: x-evil-header: \\u001b[31mheader\\u007f\\u009b\n" in out.stderr, out
    assert "headers: x-\\xFF\\xFEname: v\n" in out.stderr, out
    assert "trailers: x-evil-trailer: \\u001b]0;owned\\u0007\n" in out.stderr, out
    assert out.stderr.endswith("PERMISSION_DENIED: \\u001b[31mdenied\n"), out


# What a hostile "gateway" answers on --via ws (frames) and --via http (NDJSON lines): a message with
# DEL and CSI in a string (valid JSON), a line that is no JSON at all, and a $end whose message and
# trailers hold escape sequences once decoded.
HOSTILE_LINES = [
    json.dumps({"text": ECHOED}, ensure_ascii=False),
    f"{ESC}[2J{ESC}]0;owned{BEL}not JSON{CSI}",
    json.dumps({"$end": {"code": 7, "message": f"{ESC}[31mbad", "trailers": {"x-evil": [f"{ESC}]0;owned{BEL}"]}}}),
]


class HostileGateway(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        # The request is NDJSON sent as it is read (chunked): read it whole, then answer.
        while size := int(self.rfile.readline().split(b";")[0], 16):
            self.rfile.read(size + 2)
        self.rfile.readline()
        body = "".join(line + "\n" for line in HOSTILE_LINES).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def hostile_websocket(connection):
    for frame in connection:
        if json.loads(frame) == {"$end": True}:
            break
    connection.send(json.dumps({"$headers": {"x-evil": [f"{ESC}[31mhead"]}}))
    for line in HOSTILE_LINES:
        connection.send(line)


@pytest.mark.parametrize("via", ["ws", "http"])
def test_what_a_hostile_gateway_sends_is_escaped(via):
    from websockets.sync.server import serve

    server = (serve(hostile_websocket, "127.0.0.1", 0) if via == "ws"
              else http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileGateway))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.socket.getsockname()[1]
        out = raw_cli("call", *via_args(via), f"127.0.0.1:{port}", "evil.Hostile/Echo", "-d", '{"text":"hi"}', "-v")
    finally:
        server.shutdown()
    assert out.returncode == 7, out
    first, second = out.stdout.splitlines()
    assert json.loads(first) == {"text": ECHOED}, out
    assert second == "\\u001b[2J\\u001b]0;owned\\u0007not JSON\\u009b", out
    assert "trailers: x-evil: \\u001b]0;owned\\u0007\n" in out.stderr, out
    assert out.stderr.endswith("PERMISSION_DENIED: \\u001b[31mbad\n"), out
    if via == "ws":
        assert "headers: x-evil: \\u001b[31mhead\n" in out.stderr, out

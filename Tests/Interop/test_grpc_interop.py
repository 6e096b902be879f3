"""gRPC's cross-language interop cases (doc/interop-test-descriptions.md in grpc/grpc) against
Sluice's `--interop-service`, with grpcio as the client: each test is one case, named as the
description names it, doing what its procedure says and asserting what its "Client asserts" list.

Where grpcio cannot see a message's compressed flag (server_compressed_unary and
server_compressed_streaming), the same call is also made with the h2 library and the flag and
`grpc-encoding` are read off the wire."""
import gzip
import sys

import grpc
import pytest

from test_grpc_engine import exchange, framed, request_headers
from conftest import ROOT

TEST_SERVICE = "/grpc.testing.TestService"


@pytest.fixture(scope="module")
def testing(tmp_path_factory):
    """grpcio stubs for Protos/interop/grpc_testing.proto."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("interop-stubs")
    proto = ROOT / "Protos" / "interop" / "grpc_testing.proto"
    args = ["protoc", f"-I{proto.parent}", f"--python_out={out}", f"--grpc_python_out={out}", str(proto)]
    assert protoc.main(args) == 0, "grpcio-tools could not compile the interop proto"
    sys.path.insert(0, str(out))
    import grpc_testing_pb2, grpc_testing_pb2_grpc  # noqa: E401

    return grpc_testing_pb2, grpc_testing_pb2_grpc


@pytest.fixture(scope="module")
def server():
    from conftest import Sluice

    s = Sluice("--interop-service")
    yield s
    s.close()


@pytest.fixture
def client(server, testing):
    """A fresh grpcio channel per case, as the interop client makes one per test case."""
    messages, services = testing
    channel = grpc.insecure_channel(server.grpc_target)
    grpc.channel_ready_future(channel).result(timeout=10)
    yield messages, services.TestServiceStub(channel), channel
    channel.close()


def zeros(messages, size):
    return messages.Payload(body=bytes(size))


def large_request(messages, **fields):
    return messages.SimpleRequest(response_size=314159, payload=zeros(messages, 271828), **fields)


def test_empty_unary(client):
    messages, stub, _ = client
    response = stub.EmptyCall(messages.Empty(), timeout=10)
    assert response == messages.Empty()
    assert response.ByteSize() == 0


def test_large_unary(client):
    messages, stub, _ = client
    response = stub.UnaryCall(large_request(messages), timeout=10)
    assert response.payload.body == bytes(314159)


def test_client_compressed_unary(client):
    messages, stub, _ = client
    expect = messages.BoolValue(value=True)
    # The feature probe: an uncompressed message that says it is compressed is refused.
    with pytest.raises(grpc.RpcError) as probe:
        stub.UnaryCall(large_request(messages, expect_compressed=expect), timeout=10)
    assert probe.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    compressed = stub.UnaryCall(large_request(messages, expect_compressed=expect), timeout=10,
                                compression=grpc.Compression.Gzip)
    assert compressed.payload.body == bytes(314159)
    plain = stub.UnaryCall(large_request(messages, expect_compressed=messages.BoolValue(value=False)), timeout=10)
    assert plain.payload.body == bytes(314159)


def test_server_compressed_unary(client, server):
    messages, stub, _ = client
    for value in (True, False):
        request = large_request(messages, response_compressed=messages.BoolValue(value=value))
        response = stub.UnaryCall(request, timeout=10)
        assert response.payload.body == bytes(314159)

        # grpcio hides the flag: read it off the wire (a smaller call: the h2 helper sends and
        # reads within HTTP/2's default 64 KiB windows).
        request = messages.SimpleRequest(response_size=31415, response_compressed=messages.BoolValue(value=value))
        answer = exchange(server.grpc_port, request_headers(f"{TEST_SERVICE}/UnaryCall", grpc_accept_encoding="gzip"),
                          framed(request.SerializeToString()))
        assert answer["trailers"].get("grpc-status") == "0", answer
        assert answer["headers"].get("grpc-encoding") == "gzip"
        flag, length = answer["data"][0], int.from_bytes(answer["data"][1:5], "big")
        body = answer["data"][5:]
        assert len(body) == length
        assert flag == (1 if value else 0)
        decoded = messages.SimpleResponse.FromString(gzip.decompress(body) if value else body)
        assert decoded.payload.body == bytes(31415)


def test_server_compressed_unary_without_gzip_from_client(client, server):
    """A client that does not accept gzip gets the response uncompressed, whatever it asked."""
    messages, _, _ = client
    request = messages.SimpleRequest(response_size=31415, response_compressed=messages.BoolValue(value=True))
    answer = exchange(server.grpc_port, request_headers(f"{TEST_SERVICE}/UnaryCall"), framed(request.SerializeToString()))
    assert answer["trailers"].get("grpc-status") == "0", answer
    assert "grpc-encoding" not in answer["headers"]
    assert answer["data"][0] == 0
    assert messages.SimpleResponse.FromString(answer["data"][5:]).payload.body == bytes(31415)


def test_client_streaming(client):
    messages, stub, _ = client
    sizes = [27182, 8, 1828, 45904]
    response = stub.StreamingInputCall(iter([messages.StreamingInputCallRequest(payload=zeros(messages, n))
                                             for n in sizes]), timeout=10)
    assert response.aggregated_payload_size == 74922


def test_client_compressed_streaming(client):
    messages, stub, _ = client
    probe = messages.StreamingInputCallRequest(expect_compressed=messages.BoolValue(value=True),
                                               payload=zeros(messages, 27182))
    with pytest.raises(grpc.RpcError) as refused:
        stub.StreamingInputCall(iter([probe]), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    response = stub.StreamingInputCall(iter([probe]), timeout=10, compression=grpc.Compression.Gzip)
    assert response.aggregated_payload_size == 27182


def test_server_streaming(client):
    messages, stub, _ = client
    sizes = [31415, 9, 2653, 58979]
    request = messages.StreamingOutputCallRequest(
        response_parameters=[messages.ResponseParameters(size=n) for n in sizes])
    responses = list(stub.StreamingOutputCall(request, timeout=10))
    assert [len(r.payload.body) for r in responses] == sizes
    assert all(r.payload.body == bytes(len(r.payload.body)) for r in responses)


def test_server_compressed_streaming(client, server):
    messages, stub, _ = client
    request = messages.StreamingOutputCallRequest(response_parameters=[
        messages.ResponseParameters(size=31415, compressed=messages.BoolValue(value=True)),
        messages.ResponseParameters(size=92653, compressed=messages.BoolValue(value=False)),
    ])
    assert [len(r.payload.body) for r in stub.StreamingOutputCall(request, timeout=10)] == [31415, 92653]

    # On the wire, smaller (HTTP/2's default windows): the flags must be 1 then 0.
    request = messages.StreamingOutputCallRequest(response_parameters=[
        messages.ResponseParameters(size=31415, compressed=messages.BoolValue(value=True)),
        messages.ResponseParameters(size=9265, compressed=messages.BoolValue(value=False)),
    ])
    answer = exchange(server.grpc_port,
                      request_headers(f"{TEST_SERVICE}/StreamingOutputCall", grpc_accept_encoding="identity,gzip"),
                      framed(request.SerializeToString()))
    assert answer["trailers"].get("grpc-status") == "0", answer
    data, flags, sizes = answer["data"], [], []
    while data:
        flag, length = data[0], int.from_bytes(data[1:5], "big")
        body, data = data[5:5 + length], data[5 + length:]
        flags.append(flag)
        sizes.append(len(messages.StreamingOutputCallResponse.FromString(
            gzip.decompress(body) if flag else body).payload.body))
    assert flags == [1, 0]
    assert sizes == [31415, 9265]


def test_ping_pong(client):
    messages, stub, _ = client
    pairs = [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)]
    requests = []
    import queue
    outbox = queue.Queue()

    def feed():
        while (item := outbox.get()) is not None:
            yield item

    call = stub.FullDuplexCall(feed(), timeout=10)
    received = []
    for response_size, payload_size in pairs:
        request = messages.StreamingOutputCallRequest(
            response_parameters=[messages.ResponseParameters(size=response_size)],
            payload=zeros(messages, payload_size))
        requests.append(request)
        outbox.put(request)
        # The next request goes only after this one's reply: a real ping-pong.
        received.append(len(next(call).payload.body))
    outbox.put(None)
    assert list(call) == []
    assert received == [31415, 9, 2653, 58979]
    assert call.code() == grpc.StatusCode.OK


def test_empty_stream(client):
    _, stub, _ = client
    call = stub.FullDuplexCall(iter([]), timeout=10)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


def test_cancel_after_begin(client, server):
    _, stub, _ = client
    import threading
    release = threading.Event()

    def never():
        release.wait(10)
        return
        yield

    future = stub.StreamingInputCall.future(never(), timeout=10)
    future.cancel()
    release.set()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()
    assert future.cancelled()
    # The reset reached the server's handler: the call ended there as cancelled.
    assert server.wait_for_log("RPC finished", "TestService/StreamingInputCall", "code=cancelled")


def test_cancel_after_first_response(client, server):
    messages, stub, _ = client
    import queue
    outbox = queue.Queue()

    def feed():
        while (item := outbox.get()) is not None:
            yield item

    call = stub.FullDuplexCall(feed(), timeout=10)
    outbox.put(messages.StreamingOutputCallRequest(response_parameters=[messages.ResponseParameters(size=31415)],
                                                   payload=zeros(messages, 27182)))
    assert len(next(call).payload.body) == 31415
    call.cancel()
    outbox.put(None)
    assert call.code() == grpc.StatusCode.CANCELLED
    assert server.wait_for_log("RPC finished", "TestService/FullDuplexCall", "code=cancelled", "messages_out=1")


def test_timeout_on_sleeping_server(client):
    messages, stub, _ = client
    import threading
    release = threading.Event()

    def one_then_wait():
        yield messages.StreamingOutputCallRequest(payload=zeros(messages, 27182))
        release.wait(10)

    call = stub.FullDuplexCall(one_then_wait(), timeout=0.001)
    with pytest.raises(grpc.RpcError) as failed:
        list(call)
    release.set()
    assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_timeout_on_sleeping_server_is_enforced_by_the_server(server, client):
    """The server's own deadline: the raw call waits longer than its grpc-timeout, and the
    answer is DEADLINE_EXCEEDED from Sluice, not from a client timer."""
    messages, _, _ = client
    request = messages.StreamingOutputCallRequest(payload=zeros(messages, 2718))
    answer = exchange(server.grpc_port, request_headers(f"{TEST_SERVICE}/FullDuplexCall", grpc_timeout="50m"),
                      framed(request.SerializeToString()), end=False)
    assert answer["trailers"].get("grpc-status") == "4", answer


ECHO = [("x-grpc-test-echo-initial", "test_initial_metadata_value"), ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")]


def test_custom_metadata(client):
    messages, stub, _ = client
    response, call = stub.UnaryCall.with_call(large_request(messages), metadata=ECHO, timeout=10)
    assert response.payload.body == bytes(314159)
    assert ("x-grpc-test-echo-initial", "test_initial_metadata_value") in call.initial_metadata()
    assert ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab") in call.trailing_metadata()

    request = messages.StreamingOutputCallRequest(response_parameters=[messages.ResponseParameters(size=314159)],
                                                  payload=zeros(messages, 271828))
    stream = stub.FullDuplexCall(iter([request]), metadata=ECHO, timeout=10)
    assert [len(r.payload.body) for r in stream] == [314159]
    assert ("x-grpc-test-echo-initial", "test_initial_metadata_value") in stream.initial_metadata()
    assert ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab") in stream.trailing_metadata()
    assert stream.code() == grpc.StatusCode.OK


@pytest.mark.parametrize("message", [
    "test status message",
    # special_status_message: whitespace, and Unicode inside and outside the BMP.
    "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n",
])
def test_status_code_and_message(client, message):
    messages, stub, _ = client
    status = messages.EchoStatus(code=2, message=message)
    with pytest.raises(grpc.RpcError) as unary:
        stub.UnaryCall(messages.SimpleRequest(response_status=status), timeout=10)
    assert unary.value.code() == grpc.StatusCode.UNKNOWN
    assert unary.value.details() == message

    stream = stub.FullDuplexCall(iter([messages.StreamingOutputCallRequest(response_status=status)]), timeout=10)
    with pytest.raises(grpc.RpcError) as duplex:
        list(stream)
    assert duplex.value.code() == grpc.StatusCode.UNKNOWN
    assert duplex.value.details() == message


def test_unimplemented_method(client):
    messages, _, channel = client
    call = channel.unary_unary(f"{TEST_SERVICE}/UnimplementedCall",
                               request_serializer=messages.Empty.SerializeToString,
                               response_deserializer=messages.Empty.FromString)
    with pytest.raises(grpc.RpcError) as failed:
        call(messages.Empty(), timeout=10)
    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unimplemented_service(client, testing):
    messages, services = testing
    _, _, channel = client
    with pytest.raises(grpc.RpcError) as failed:
        services.UnimplementedServiceStub(channel).UnimplementedCall(messages.Empty(), timeout=10)
    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED


# --- what the interop cases leave open: sizes from the client --------------------------------------


@pytest.mark.parametrize("size, code", [(-1, grpc.StatusCode.INVALID_ARGUMENT),
                                        (64 << 20, grpc.StatusCode.RESOURCE_EXHAUSTED)])
def test_response_sizes_out_of_range(client, server, size, code):
    messages, stub, _ = client
    with pytest.raises(grpc.RpcError) as unary:
        stub.UnaryCall(messages.SimpleRequest(response_size=size), timeout=10)
    assert unary.value.code() == code
    stream = stub.StreamingOutputCall(
        messages.StreamingOutputCallRequest(response_parameters=[messages.ResponseParameters(size=size)]), timeout=10)
    with pytest.raises(grpc.RpcError) as streaming:
        list(stream)
    assert streaming.value.code() == code
    # The port still serves.
    assert stub.EmptyCall(messages.Empty(), timeout=10) == messages.Empty()


def test_interop_service_is_off_by_default(sluice, testing):
    messages, services = testing
    with grpc.insecure_channel(sluice.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as failed:
            services.TestServiceStub(channel).EmptyCall(messages.Empty(), timeout=10)
    assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED

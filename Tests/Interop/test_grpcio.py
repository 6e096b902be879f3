"""The seed tutorial's client flow, from Python grpcio against a real `sluice` process."""
import datetime
import queue
import re
import signal
import time

import grpc
import pytest


@pytest.fixture
def channel(sluice):
    with grpc.insecure_channel(sluice.grpc_target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


def point(stubs, name, value):
    return stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(name=name, value=value))


def test_list_counts_up_from_the_request(stubs, channel):
    stub = stubs.stream_pb2_grpc.StreamServiceStub(channel)
    responses = list(stub.List(point(stubs, "a", 10), timeout=10))
    assert [r.pt.value for r in responses] == list(range(10, 17))
    assert {r.pt.name for r in responses} == {"a"}


def test_record_answers_after_half_close(stubs, channel):
    stub = stubs.stream_pb2_grpc.StreamServiceStub(channel)
    response = stub.Record(iter([point(stubs, "r", n) for n in range(5)]), timeout=10)
    assert response.pt.name == "gRPC Stream Server: Record"
    assert response.pt.value == 1


def test_route_answers_each_request_before_the_next(stubs, channel):
    stub = stubs.stream_pb2_grpc.StreamServiceStub(channel)
    outbox = queue.Queue()

    def requests():
        while (item := outbox.get()) is not None:
            yield item

    outbox.put(point(stubs, "first", 0))
    values = []
    for response in stub.Route(requests(), timeout=10):
        assert response.pt.name == "gRPC Stream Server: Route"
        values.append(response.pt.value)
        # Only now is the next request sent: every answer came before its successor was written.
        outbox.put(point(stubs, "next", len(values)) if len(values) < 5 else None)
    assert values == [0, 1, 2, 3, 4]


def test_say_hi(stubs, channel):
    stub = stubs.hello_pb2_grpc.UserServiceStub(channel)
    response = stub.SayHi(stubs.hello_pb2.Request(name="ada"), timeout=10)
    m = re.fullmatch(r"hi ada---(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})", response.result)
    assert m, response.result
    stamp = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
    assert abs((datetime.datetime.now() - stamp).total_seconds()) < 120, "not the local time"


def test_data_service_bidirectional_stream(stubs, channel):
    stub = stubs.data_pb2_grpc.DataServiceStub(channel)
    words = ["alpha", "beta", "", "ünïcode"]
    responses = stub.BidirectionalStream(iter([stubs.data_pb2.StreamRequest(data=w) for w in words]), timeout=10)
    assert [r.result for r in responses] == [f"processed: {w}" for w in words]


def test_unknown_method_is_unimplemented(channel):
    call = channel.unary_unary("/proto.StreamService/Nope")
    with pytest.raises(grpc.RpcError) as e:
        call(b"", timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_open_streams_with_a_status_and_exits_zero(stubs, start_sluice, sig):
    s = start_sluice()
    with grpc.insecure_channel(s.grpc_target) as ch:
        stub = stubs.stream_pb2_grpc.StreamServiceStub(ch)
        outbox = queue.Queue()
        outbox.put(point(stubs, "x", 0))

        def requests():
            while (item := outbox.get()) is not None:
                yield item

        stream = stub.Route(requests(), timeout=30)
        assert next(stream).pt.value == 0
        assert s.terminate(sig) == 0, "".join(s.log)
        with pytest.raises(grpc.RpcError) as e:
            next(stream)
        outbox.put(None)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value.details()


def test_cancelling_a_list_mid_stream_stops_it_on_the_server(stubs, start_sluice):
    # A small pace keeps the producer realistic: with no pace at all, grpc-swift-nio-transport 2.9
    # queues writes faster than its event loop drains them and sees the reset only once the queue
    # is through (noted for the backpressure work in issue 4).
    s = start_sluice("--list-count", "100000000", "--pace-ms", "5", "--log-level", "debug")
    with grpc.insecure_channel(s.grpc_target) as ch:
        stub = stubs.stream_pb2_grpc.StreamServiceStub(ch)
        stream = stub.List(point(stubs, "c", 0), timeout=60)
        assert [next(stream).pt.value for _ in range(5)] == [0, 1, 2, 3, 4]
        stream.cancel()
        # The monitor logs one line when the handler has really stopped.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            "RPC finished" in line and "proto.StreamService/List" in line for line in s.log
        ):
            time.sleep(0.05)
        finished = [line for line in s.log if "RPC finished" in line and "proto.StreamService/List" in line]
        assert finished, "List kept running after the client cancelled it:\n" + "".join(s.log[-20:])
        assert "sluice.rpc.code=ok" not in finished[0], finished[0]

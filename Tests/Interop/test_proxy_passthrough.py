"""Native calls through the proxy pass their messages on still framed (issue 30): the whole messages
of a DATA frame go to the other side as the client or the upstream framed them, each one's length
checked against `--max-message-bytes`, none cut out and framed again; a call with message encoding
(gzip) is cut apart and inflated as before. Whatever the sizes and however HTTP/2 splits them,
every message must arrive byte for byte and in order, be counted in the metrics, and a message
over the limit must still end its call, in either direction."""
import grpc
import pytest

from test_proxy_pipelined import metric
from test_upstream import SERVICE, lab, upstream  # noqa: F401  (fixtures)

LIMIT = 400_000
# Empty, tiny, around one DATA frame (16 KiB with its 5-byte prefix), several frames, near the limit.
SIZES = [0, 1, 5, 16_370, 16_379, 16_384, 70_000, 300_000, LIMIT - 100]


@pytest.fixture
def proxy(start_sluice, lab, upstream):  # noqa: F811
    return start_sluice("--hosted", "none", "--upstream", f"{SERVICE}={upstream.address}",
                        "--descriptor-set", str(lab.protoset), "--max-message-bytes", str(LIMIT))


def items(pb2):
    """Large and small items interleaved with runs of small ones (many to a DATA frame)."""
    out = []
    for n, size in enumerate(SIZES):
        out.append(pb2.Item(name=f"big{n}", count=n, blob=bytes([n % 251]) * size))
        out.extend(pb2.Item(name=f"small{n}-{i}", count=i) for i in range(200))
    return out


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["identity", "gzip"])
def test_messages_of_every_size_cross_the_proxy_byte_for_byte(compression, proxy, lab):  # noqa: F811
    pb2 = lab.pb2
    sent = items(pb2)
    with grpc.insecure_channel(proxy.grpc_target, compression=compression,
                               options=[("grpc.max_receive_message_length", LIMIT),
                                        ("grpc.max_send_message_length", LIMIT)]) as channel:
        stub = lab.grpc.LabStub(channel)
        replies = list(stub.Chat(iter(sent), timeout=60))
        assert len(replies) == len(sent)
        for reply, item in zip(replies, sent):
            assert reply.item == item, (item.name, len(item.blob), len(reply.item.blob))
        total = stub.Sum(iter(sent), timeout=60)
        assert (total.sum, total.items) == (sum(i.count for i in sent), len(sent))
        # Server streaming: responses of 100 KB, each split over several DATA frames.
        counted = list(stub.Count(pb2.CountRequest(count=20, payload_bytes=100_000), timeout=60))
        assert [c.count for c in counted] == list(range(20))
        assert all(c.notes == ["x" * 100_000] for c in counted)
    # Every message counted once, in and out, on the native transport: Chat's and Sum's requests
    # and Count's one; Chat's and Count's responses and Sum's one.
    assert metric(proxy.http_port, "sluice_messages_total", transport="grpc", direction="in") == 2 * len(sent) + 1
    assert metric(proxy.http_port, "sluice_messages_total", transport="grpc", direction="out") == len(sent) + 21


def test_a_request_message_over_the_limit_ends_the_call_after_those_before_it(proxy, lab):  # noqa: F811
    pb2 = lab.pb2
    before = [pb2.Item(name=f"ok{i}") for i in range(5)]
    too_big = pb2.Item(name="too big", blob=b"\x01" * LIMIT)
    with grpc.insecure_channel(proxy.grpc_target, options=[("grpc.max_send_message_length", 2 * LIMIT)]) as channel:
        stub = lab.grpc.LabStub(channel)
        call = stub.Chat(iter(before + [too_big, pb2.Item(name="after")]), timeout=30)
        names = []
        with pytest.raises(grpc.RpcError) as e:
            for reply in call:
                names.append(reply.item.name)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value
        assert f"over the limit of {LIMIT}" in e.value.details(), e.value.details()
        # What came before it got through; nothing after it did.
        assert names == [i.name for i in before][:len(names)] and "after" not in names
        # The proxy and the upstream serve on.
        assert stub.Echo(pb2.Item(name="next"), timeout=10).item.name == "next"


def test_a_response_message_over_the_limit_ends_the_call(proxy, lab):  # noqa: F811
    pb2 = lab.pb2
    with grpc.insecure_channel(proxy.grpc_target, options=[("grpc.max_receive_message_length", 2 * LIMIT)]) as channel:
        stub = lab.grpc.LabStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Count(pb2.CountRequest(count=3, payload_bytes=LIMIT), timeout=30))
        assert e.value.code() == grpc.StatusCode.INTERNAL, e.value
        assert "over the limit" in e.value.details(), e.value.details()
        assert [c.count for c in stub.Count(pb2.CountRequest(count=3), timeout=10)] == [0, 1, 2]

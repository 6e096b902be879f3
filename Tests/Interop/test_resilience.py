"""Resilience of the live gateway (issue 8): many stalled readers, connect/abort storms, and a
graceful drain of many open streams.

Memory is the gateway's RSS from /proc; RPCs in flight come from GET /metrics
(`sluice_rpcs_active`), or, while /metrics answers 404, from the debug log (`RPC finished` lines
against the RPCs these tests know they started). Figures go to test-output/resilience.txt.
"""
import asyncio
import json
import signal
import socket
import struct
import time
from pathlib import Path

import sluice_fuzz as fz

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
LIST = "/proto.StreamService/List"
LIST_METHOD = "proto.StreamService/List"


def record(line):
    OUTPUT.mkdir(exist_ok=True)
    with open(OUTPUT / "resilience.txt", "a") as f:
        f.write(line + "\n")
    print(line)


async def open_ws(port, path, rcvbuf=None):
    """A raw WebSocket connection past its handshake: (reader, writer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    writer.write(fz.handshake_bytes(port, path))
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def reset(writer):
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


def settle_active(s, started, timeout=20):
    """Waits for the active-RPC gauge to reach 0; returns the last value (None: unknown)."""
    return fz.wait_for_no_active_rpcs(s, started=started, timeout=timeout)


# --- 1,000 stalled readers -------------------------------------------------------------------


def tcp_kernel_kib():
    """Memory the kernel holds for all TCP sockets (both ends of loopback), from /proc/net/sockstat."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1]) * 4  # pages of 4 KiB
    raise AssertionError("no TCP line in /proc/net/sockstat")


def open_stalled_list(port, request):
    """A WebSocket List client that reads the first response and then never reads again. Its
    receive buffer is small (set before connecting), so the TCP window closes quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    sock.sendall(fz.handshake_bytes(port, LIST))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed during the handshake: {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 101"), data
    sock.sendall(request)
    rest = data.split(b"\r\n\r\n", 1)[1]
    while len(rest) < 2:  # the first frame's header: the List runs
        chunk = sock.recv(4096)
        assert chunk, "closed before the first response"
        rest += chunk
    assert rest[0] == 0x81, f"expected a text frame, got {rest[:40]!r}"
    return sock


def test_a_thousand_stalled_list_readers(start_sluice):
    """1,000 clients stop reading a full-speed List. Each socket holds at most TCP_NOTSENT_LOWAT
    unsent bytes and NIO's write buffer its high-water mark, so memory stays bounded, the gateway
    keeps serving, and keepalive (whose ping cannot be written) drops every stalled session and
    cancels its RPC without the clients doing anything. Two rounds: the second must not need more
    memory than the first (nothing kept from the first)."""
    fz.raise_nofile(20000)
    n, ping = 1000, 15  # keepalive drops a stalled session about 2 pings in: after it is measured
    s = start_sluice("--list-count", "100000000", "--ws-ping-interval", str(ping))
    request = fz.text(json.dumps({"pt": {"name": "stall", "value": 0}}))
    rss_before, kernel_before = s.rss_kib(), tcp_kernel_kib()
    peaks = []
    for round_ in (1, 2):
        t0 = time.monotonic()
        socks = [open_stalled_list(s.http_port, request) for _ in range(n)]
        opened = time.monotonic() - t0
        try:
            rss, kernel = [], []
            for _ in range(4):
                time.sleep(1.5)
                rss.append(s.rss_kib())
                kernel.append(tcp_kernel_kib())
            active = fz.active_rpcs(s)
            t = time.monotonic()
            status, body = fz.say_hi_over_http(s.http_port)
            say_hi = time.monotonic() - t
            # Nobody closes the stalled clients: keepalive must end them (a ping every `ping` s).
            remaining = settle_active(s, None, timeout=4 * ping + 20)
            reaped = time.monotonic() - t0
            rss_after = s.rss_kib()
        finally:
            for sock in socks:
                sock.close()
        peaks.append(max(rss))
        per_session = (max(rss) - rss_before) / n
        record(f"round {round_}: {n} stalled List readers (client SO_RCVBUF 16 KiB, --ws-ping-interval {ping}): "
               f"opened in {opened:.1f} s; gateway RSS {rss_before} KiB at start, {rss} KiB while stalled "
               f"({per_session:.0f} KiB per session); kernel TCP memory {kernel_before} -> {kernel} KiB "
               f"({(max(kernel) - kernel_before) / n:.0f} KiB per session, both ends); {active} RPCs active; "
               f"SayHi over HTTP meanwhile: {status} in {say_hi:.3f} s; all dropped by keepalive after "
               f"{reaped:.1f} s ({remaining} RPCs left); RSS afterwards {rss_after} KiB")
        assert s.process.poll() is None, "the gateway died"
        assert active == n, f"{active} RPCs active while {n} Lists were stalled"
        assert status == 200 and b"hi health" in body, (status, body[:200])
        # Bounded: the write buffers per session are capped (16 KiB unsent in the kernel, 16 KiB
        # in NIO); before the cap the kernel grew each stalled socket towards tcp_wmem's maximum.
        assert (max(kernel) - kernel_before) / n < 128, f"kernel TCP memory per stalled session: {kernel}"
        assert per_session < 512, f"RSS per stalled session: {per_session:.0f} KiB"
        # Flat: nothing accumulates while the readers stay stalled.
        assert rss[-1] - rss[0] < 16 * 1024, f"RSS kept growing while the readers stalled: {rss}"
        assert remaining == 0, f"{remaining} RPCs still active: keepalive did not drop the stalled sessions"
    # The second round reuses the first one's memory: a leak would add about a round's worth.
    assert peaks[1] - peaks[0] < (peaks[0] - rss_before) / 4, f"RSS peaks of the two rounds: {peaks} KiB"


# --- 10,000 connect/abort cycles -------------------------------------------------------------


def test_ten_thousand_connect_abort_cycles(start_sluice):
    fz.raise_nofile(20000)
    s = start_sluice("--list-count", "100000", "--log-level", "debug")
    cycles, concurrency = 10_000, 64
    before = s.rss_kib()
    port = s.http_port
    counts = {"tcp_only": 0, "half_handshake": 0, "handshake": 0, "list_started": 0, "http_list_started": 0,
              "list_fin": 0, "http_half_body": 0}
    errors = []
    request = fz.text(json.dumps({"pt": {"name": "abort", "value": 0}}))
    full_handshake = fz.handshake_bytes(port, LIST)
    http_list = (f"POST {LIST} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: 29\r\n\r\n").encode() + b'{"pt":{"name":"h","value":0}}'

    async def one(i):
        kind = list(counts)[i % len(counts)]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if kind == "half_handshake":
                writer.write(full_handshake[: len(full_handshake) // 2])
                await writer.drain()
            elif kind == "handshake":
                writer.write(full_handshake)
                await reader.readuntil(b"\r\n\r\n")
            elif kind in ("list_started", "list_fin"):
                writer.write(full_handshake)
                await reader.readuntil(b"\r\n\r\n")
                writer.write(request)
                out = fz.WSOutcome()
                frame = await asyncio.wait_for(fz.read_server_frame(reader, out), 10)
                assert frame and frame[1] == 1, (frame, out.problems)
                if kind == "list_fin":
                    writer.close()  # FIN, no Close frame: a vanished client
                    counts[kind] += 1
                    return
            elif kind == "http_list_started":
                writer.write(http_list)
                await reader.readuntil(b"\r\n\r\n")
                await reader.readuntil(b"\n")  # the first chunk header: the List runs
            elif kind == "http_half_body":
                writer.write(http_list[:-10])
                await writer.drain()
            reset(writer)
            counts[kind] += 1
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            errors.append(f"{kind}: {type(e).__name__}: {e}")

    async def go():
        sem = asyncio.Semaphore(concurrency)

        async def bounded(i):
            async with sem:
                await one(i)

        start = time.monotonic()
        await asyncio.gather(*[bounded(i) for i in range(cycles)])
        return time.monotonic() - start

    elapsed = asyncio.run(go())
    started = {LIST_METHOD: counts["list_started"] + counts["http_list_started"] + counts["list_fin"]}
    remaining = settle_active(s, started)
    time.sleep(1)
    after = s.rss_kib()
    record(f"{cycles} connect/abort cycles ({concurrency} at a time, {elapsed:.1f} s, {cycles / elapsed:.0f}/s): "
           f"{counts}; RSS before {before} KiB, after {after} KiB (growth {after - before} KiB); "
           f"active RPCs afterwards {remaining}; client errors {len(errors)}")
    assert s.process.poll() is None, "the gateway died"
    assert not errors, errors[:10]
    assert after - before < 64 * 1024, f"RSS grew by {after - before} KiB"
    assert remaining is not None, "could not read the active-RPC gauge"
    assert remaining == 0, f"{remaining} RPCs still active after every client went away"
    assert not fz.check_health(s, list_count=100000)


# --- graceful drain of 1,000 open streams ------------------------------------------------------


def test_sigterm_drains_a_thousand_open_streams(start_sluice):
    fz.raise_nofile(20000)
    n, drain_timeout = 1000, 10
    s = start_sluice("--pace-ms", "1000", "--list-count", "1000", "--drain-timeout", str(drain_timeout))
    request = fz.text(json.dumps({"pt": {"name": "drain", "value": 0}}))

    async def client(opened):
        reader, writer = await open_ws(s.http_port, LIST)
        writer.write(request)
        out = fz.WSOutcome()
        first = await asyncio.wait_for(fz.read_server_frame(reader, out), 30)
        assert first and first[1] == 1, (first, out.problems)
        opened.release()
        await asyncio.wait_for(fz._read_session(reader, writer, out, False, "keep"), 60)
        writer.transport.abort()
        return out

    async def go():
        opened = asyncio.Semaphore(0)
        tasks = [asyncio.ensure_future(client(opened)) for _ in range(n)]
        for _ in range(n):
            await asyncio.wait_for(opened.acquire(), 60)
        t0 = time.monotonic()
        s.process.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        t_clients = time.monotonic() - t0
        code = await asyncio.get_running_loop().run_in_executor(None, lambda: s.process.wait(drain_timeout + 20))
        return results, t_clients, time.monotonic() - t0, code

    results, t_clients, t_exit, code = asyncio.run(go())
    good, bad = 0, []
    for r in results:
        if isinstance(r, BaseException):
            bad.append(f"{type(r).__name__}: {r}")
            continue
        ends = [t for t in r.texts if "$end" in t]
        if len(ends) == 1 and r.texts[-1] is ends[0] and ends[0]["$end"].get("code") == 14 and r.close_code == 1001:
            good += 1
        else:
            bad.append(f"$end {ends} Close {r.close_code} problems {r.problems[:2]} reset {r.reset}")
    record(f"drain: {n} open List streams (--pace-ms 1000), SIGTERM: all clients ended after {t_clients:.2f} s, "
           f"process exited with {code} after {t_exit:.2f} s (--drain-timeout {drain_timeout}); "
           f"{good} saw $end 14 + Close 1001, {len(bad)} did not")
    assert not bad, f"{len(bad)} clients: " + "; ".join(sorted(set(bad))[:5])
    assert code == 0
    assert t_exit < drain_timeout + 2, f"exit took {t_exit:.1f} s"

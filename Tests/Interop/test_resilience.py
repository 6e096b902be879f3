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

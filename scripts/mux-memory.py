#!/usr/bin/env python3
"""What an idle open stream of a multiplexed WebSocket session costs (issue: ≤ 2 kB beyond the
session): starts a release `sluice`, opens SESSIONS sessions on / and measures its RSS, then opens
STREAMS Route streams on each (start frames, no message) and measures again.

    scripts/mux-memory.py [SESSIONS] [STREAMS]      # default 100 sessions x 1,000 streams

Prints the RSS before and after and the bytes per open stream. Needs `pip install websockets`;
SLUICE_BIN names the binary (default .build/release/sluice).
"""
import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def measure(port, pid, sessions, streams):
    sockets = [await websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) for _ in range(sessions)]
    await asyncio.sleep(1)
    before = rss_kib(pid)
    for ws in sockets:
        for i in range(streams):
            await ws.send(json.dumps({"id": i, "start": "/proto.StreamService/Route"}))
    # A ping behind the starts: answered once every start before it was taken.
    for ws in sockets:
        await ws.send('{"ping":1}')
        while json.loads(await ws.recv()).get("pong") != 1:
            pass
    await asyncio.sleep(1)
    after = rss_kib(pid)
    for ws in sockets:
        ws.transport.abort()
    return before, after


def main():
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    streams = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    binary = os.environ.get("SLUICE_BIN") or str(ROOT / ".build" / "release" / "sluice")
    process = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--pace-ms", "0",
         "--max-streams-per-session", str(streams), "--max-concurrent-rpcs", str(sessions * streams + 100),
         "--ws-ping-interval", "0"],
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, SWIFT_BACKTRACE="enable=no"))
    try:
        port = None
        for line in process.stderr:
            if m := re.search(r"sluice\.http\.address=127\.0\.0\.1:(\d+)", line):
                port = int(m.group(1))
                break
        if port is None:
            sys.exit("sluice did not start")
        before, after = asyncio.run(measure(port, process.pid, sessions, streams))
        print(f"{sessions} sessions x {streams:,} open Route streams: RSS {before / 1024:.1f} MiB -> "
              f"{after / 1024:.1f} MiB, {(after - before) * 1024 / (sessions * streams):.0f} bytes per open stream")
    finally:
        process.kill()


if __name__ == "__main__":
    main()

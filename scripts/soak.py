#!/usr/bin/env python3
"""Soak test: mixed load against one gateway for a while, watching errors, memory and RPCs in flight.

Load (each worker loops over it): WebSocket List, Route and Record; a multiplexed session with a List,
a Route and a SayHi; HTTP JSON SayHi and NDJSON
List; native gRPC List, Route and SayHi (grpcio, stubs generated from Protos/ into a temp dir).
Every answer is checked exactly. Every --interval seconds it prints requests done, errors, the
gateway's RSS and the active-RPC gauge (GET /metrics, `sluice_rpcs_active`; "n/a" while /metrics
answers 404). Exits non-zero on any error, if the gateway dies, if RPCs are still active at the
end, or if RSS grew by more than --rss-bound-mb during the second half of the run.

    scripts/soak.sh --minutes 10          # SLUICE_BIN selects the binary
    scripts/soak.sh --minutes 10 --proxy  # the same through a proxying gateway to a hosting one
"""
import argparse
import asyncio
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "Interop"))
import sluice_fuzz as fz  # noqa: E402

GRPC_ADDRESS = re.compile(r"sluice\.grpc\.address=\S*:(\d+)")
HTTP_ADDRESS = re.compile(r"sluice\.http\.address=\S*:(\d+)")


class Gateway:
    def __init__(self, binary, extra):
        env = dict(os.environ, SWIFT_BACKTRACE="enable=no")
        self.process = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--pace-ms", "0", *extra],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.log = collections.deque(maxlen=2000)
        self.grpc_port = self.http_port = None
        found = threading.Event()

        def drain():
            for line in self.process.stderr:
                self.log.append(line)
                if m := GRPC_ADDRESS.search(line):
                    self.grpc_port = int(m.group(1))
                if m := HTTP_ADDRESS.search(line):
                    self.http_port = int(m.group(1))
                if self.grpc_port and self.http_port:
                    found.set()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(30) or not (self.grpc_port and self.http_port):
            raise SystemExit("sluice did not start:\n" + "".join(self.log))

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def log_lines(self, *needles):
        return [line for line in list(self.log) if all(n in line for n in needles)]


def generate_stubs():
    try:
        from grpc_tools import protoc
    except ImportError:
        return None
    out = tempfile.mkdtemp(prefix="sluice-soak-stubs-")
    protos = sorted(str(p) for p in (ROOT / "Protos").glob("*.proto"))
    if protoc.main(["protoc", f"-I{ROOT / 'Protos'}", f"--python_out={out}", f"--grpc_python_out={out}", *protos]) != 0:
        return None
    sys.path.insert(0, out)
    import hello_pb2, hello_pb2_grpc, stream_pb2, stream_pb2_grpc  # noqa: E401
    return hello_pb2, hello_pb2_grpc, stream_pb2, stream_pb2_grpc


class Stats:
    def __init__(self):
        self.done = collections.Counter()
        self.errors = collections.Counter()
        self.samples = []  # first error messages

    def error(self, kind, msg):
        self.errors[kind] += 1
        if len(self.samples) < 20:
            self.samples.append(f"{kind}: {msg}")


async def ws_list(port, i):
    out = await fz.lib_ws_case(port, fz.PATHS["list"], [json.dumps({"pt": {"name": f"s{i}", "value": i % 1000}})], timeout=30)
    want = [{"pt": {"name": f"s{i}", "value": i % 1000 + n}} for n in range(fz.LIST_COUNT)] + [{"$end": {"code": 0}}]
    if out.texts != want or out.close_code != 1000 or out.problems:
        return f"WS List: {out.texts[-2:]} Close {out.close_code} {out.problems[:2]} timed out {out.timed_out}"


async def ws_route(port, i):
    n = 1 + i % 5
    frames = [json.dumps({"pt": {"name": "r", "value": k}}) for k in range(n)] + ['{"$end":true}']
    out = await fz.lib_ws_case(port, fz.PATHS["route"], frames, timeout=30)
    want = [{"pt": {"name": "gRPC Stream Server: Route", "value": k}} for k in range(n)] + [{"$end": {"code": 0}}]
    if out.texts != want or out.close_code != 1000:
        return f"WS Route: {out.texts[-2:]} Close {out.close_code} {out.problems[:2]}"


async def ws_record(port, i):
    frames = [json.dumps({"pt": {"name": "c", "value": k}}) for k in range(3)] + ['{"$end":true}']
    out = await fz.lib_ws_case(port, fz.PATHS["record"], frames, timeout=30)
    want = [{"pt": {"name": "gRPC Stream Server: Record", "value": 1}}, {"$end": {"code": 0}}]
    if out.texts != want or out.close_code != 1000:
        return f"WS Record: {out.texts} Close {out.close_code} {out.problems[:2]}"


async def ws_mux(port, i):
    """One multiplexed session (raw frames, then Close): a List, a Route of 1-5 messages and a
    one-frame SayHi, interleaved."""
    n = 1 + i % 5
    frames = [{"id": 1, "start": fz.PATHS["list"], "message": {"pt": {"name": f"m{i}", "value": 1}}},
              {"id": "r", "start": fz.PATHS["route"]},
              {"id": 2, "start": fz.PATHS["sayhi"], "message": {"name": f"x{i}"}, "end": True}]
    frames += [{"id": "r", "message": {"pt": {"name": "r", "value": k}}} for k in range(n)] + [{"id": "r", "end": True}]
    chunks = [fz.text(json.dumps(f)) for f in frames] + [fz.ws_frame(8, b"\x03\xe8")]
    out = await fz.raw_ws_case(port, "/", chunks, timeout=30, client_closes=True)
    by_id = collections.defaultdict(list)
    for frame in out.texts:
        if "credit" not in frame:
            by_id[json.dumps(frame.get("id"))].append(frame)
    listed = [{"id": 1, "message": {"pt": {"name": f"m{i}", "value": 1 + k}}} for k in range(fz.LIST_COUNT)]
    routed = [{"id": "r", "message": {"pt": {"name": "gRPC Stream Server: Route", "value": k}}} for k in range(n)]
    hi = by_id['2']
    if (by_id["1"] != listed + [{"id": 1, "end": {"code": 0}}] or by_id['"r"'] != routed + [{"id": "r", "end": {"code": 0}}]
            or len(hi) != 2 or not hi[0].get("message", {}).get("result", "").startswith(f"hi x{i}---")
            or hi[1] != {"id": 2, "end": {"code": 0}} or out.close_code != 1000 or out.problems):
        return f"WS mux: {out.texts[-3:]} Close {out.close_code} {out.problems[:2]} timed out {out.timed_out}"


async def http_say_hi(port, i):
    req = fz.http_request(fz.PATHS["sayhi"], json.dumps({"name": f"h{i}"}).encode())
    out = await fz.raw_http_case(port, [req], timeout=30)
    if out.status != 200 or not json.loads(out.body or b"{}").get("result", "").startswith(f"hi h{i}---"):
        return f"HTTP SayHi: {out.status} {out.body[:200]!r} {out.problems[:2]} timed out {out.timed_out}"


async def http_list(port, i):
    req = fz.http_request(fz.PATHS["list"], json.dumps({"pt": {"name": "n", "value": 1}}).encode())
    out = await fz.raw_http_case(port, [req], timeout=30)
    if out.status != 200:
        return f"HTTP List: {out.status} {out.body[:200]!r} {out.problems[:2]} timed out {out.timed_out}"
    lines, errs = fz.parse_ndjson(out)
    want = [{"pt": {"name": "n", "value": 1 + n}} for n in range(fz.LIST_COUNT)] + [{"$end": {"code": 0}}]
    if errs or lines != want:
        return f"HTTP List: {errs} {out.body[-200:]!r}"


def grpc_calls(stubs, target):
    import grpc
    hello_pb2, hello_pb2_grpc, stream_pb2, stream_pb2_grpc = stubs
    channel = grpc.aio.insecure_channel(target)
    stream = stream_pb2_grpc.StreamServiceStub(channel)
    hello = hello_pb2_grpc.UserServiceStub(channel)

    async def grpc_list(port, i):
        got = [r.pt.value async for r in stream.List(stream_pb2.StreamRequest(pt=stream_pb2.StreamPoint(name="g", value=i % 100)), timeout=30)]
        if got != [i % 100 + n for n in range(fz.LIST_COUNT)]:
            return f"gRPC List: {got}"

    async def grpc_route(port, i):
        reqs = [stream_pb2.StreamRequest(pt=stream_pb2.StreamPoint(name="g", value=k)) for k in range(3)]
        got = [r.pt.value async for r in stream.Route(iter(reqs), timeout=30)]
        if got != [0, 1, 2]:
            return f"gRPC Route: {got}"

    async def grpc_say_hi(port, i):
        r = await hello.SayHi(hello_pb2.Request(name=f"g{i}"), timeout=30)
        if not r.result.startswith(f"hi g{i}---"):
            return f"gRPC SayHi: {r.result!r}"

    return channel, [grpc_list, grpc_route, grpc_say_hi]


async def main_async(args, gw, stubs):
    stats = Stats()
    calls = [ws_list, ws_route, ws_record, ws_mux, http_say_hi, http_list]
    channel = None
    if stubs:
        channel, more = grpc_calls(stubs, f"127.0.0.1:{gw.grpc_port}")
        calls += more
    deadline = time.monotonic() + args.minutes * 60
    start = time.monotonic()

    async def worker(w):
        i, k = w, 0
        while time.monotonic() < deadline and gw.process.poll() is None:
            call = calls[(w + k) % len(calls)]  # every worker cycles through every kind
            k += 1
            try:
                err = await asyncio.wait_for(call(gw.http_port, i), 60)
            except Exception as e:  # noqa: BLE001
                err = f"{type(e).__name__}: {str(e)[:200]}"
            if err:
                stats.error(call.__name__, err)
            else:
                stats.done[call.__name__] += 1
            i += args.concurrency

    rss = [(0.0, gw.rss_kib())]

    async def monitor():
        last = 0
        while time.monotonic() < deadline and gw.process.poll() is None:
            await asyncio.sleep(args.interval)
            t = time.monotonic() - start
            r = gw.rss_kib()
            rss.append((t, r))
            active = await asyncio.get_running_loop().run_in_executor(None, gauge, gw)
            total = sum(stats.done.values())
            print(f"[{t:6.0f} s] requests {total} (+{(total - last) / args.interval:.0f}/s), errors {sum(stats.errors.values())}, "
                  f"gateway RSS {r / 1024:.1f} MiB, active RPCs {active}", flush=True)
            last = total

    await asyncio.gather(monitor(), *[worker(w) for w in range(args.concurrency)])
    if channel is not None:
        await channel.close()
    return stats, rss, time.monotonic() - start


def gauge(gw):
    try:
        status, body = fz.http_get(gw.http_port, "/metrics", timeout=5)
    except OSError as e:
        return f"error {e}"
    if status != 200:
        return "n/a"
    return int(sum(float(l.rsplit(" ", 1)[1]) for l in body.decode().splitlines() if l.startswith("sluice_rpcs_active")))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--rss-bound-mb", type=float, default=32, help="largest RSS growth allowed in the second half")
    ap.add_argument("--bin", default=os.environ.get("SLUICE_BIN") or str(ROOT / ".build" / "release" / "sluice"))
    ap.add_argument("--proxy", action="store_true",
                    help="load a gateway that proxies everything (--hosted none --upstream '*=…', descriptors by "
                         "reflection) to a second one hosting the services; RSS and RPCs are the proxy's")
    args = ap.parse_args()
    fz.raise_nofile(20000)
    stubs = generate_stubs()
    backend = Gateway(args.bin, []) if args.proxy else None
    gw = Gateway(args.bin, ["--hosted", "none", "--upstream", f"*=127.0.0.1:{backend.grpc_port}",
                            "--upstream-reflection"] if backend else [])
    print(f"soak: {args.bin}, {args.minutes} min, {args.concurrency} workers, native gRPC {'on' if stubs else 'off (no grpcio-tools)'}; "
          f"HTTP port {gw.http_port}, gRPC port {gw.grpc_port}"
          + (f"; proxying to the backend's gRPC port {backend.grpc_port}" if backend else ""), flush=True)
    try:
        stats, rss, elapsed = asyncio.run(main_async(args, gw, stubs))
        alive = gw.process.poll() is None
        active = None
        if alive:
            for _ in range(50):
                active = gauge(gw)
                if active in (0, "n/a"):
                    break
                time.sleep(0.2)
    finally:
        code = gw.process.poll()
        if code is None:
            gw.process.terminate()
            code = gw.process.wait(30)
        if backend and backend.process.poll() is None:
            backend.process.terminate()
            backend.process.wait(30)
    total = sum(stats.done.values())
    half = [r for t, r in rss if t >= elapsed / 2]
    growth = (half[-1] - half[0]) if len(half) >= 2 else 0
    print(f"\nsoak done: {total} requests in {elapsed:.0f} s ({total / elapsed:.0f}/s), {sum(stats.errors.values())} errors")
    print("  by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.done.items())))
    if stats.errors:
        print("  errors: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.errors.items())))
        for s in stats.samples:
            print("    " + s)
    print(f"  RSS: start {rss[0][1] / 1024:.1f} MiB, max {max(r for _, r in rss) / 1024:.1f} MiB, end {rss[-1][1] / 1024:.1f} MiB; "
          f"second-half growth {growth / 1024:.1f} MiB (bound {args.rss_bound_mb} MiB)")
    print(f"  active RPCs at the end: {active}; gateway {'exited ' + str(code) + ' after SIGTERM' if alive else 'DIED with ' + str(code)}")
    failed = bool(stats.errors) or not alive or growth > args.rss_bound_mb * 1024 or active not in (0, "n/a")
    if not alive:
        print("gateway log tail:\n" + "".join(list(gw.log)[-20:]))
    print("SOAK FAILED" if failed else "SOAK PASSED")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

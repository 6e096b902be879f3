"""Scale-out: three Sluice instances behind Debian's nginx with deploy/nginx/sluice.conf (only its
ports changed). Sessions and calls of every transport spread over all three; one instance
SIGTERMed mid-load ends its own sessions with $end 14 while new ones go to the others, and no unary
call is lost when clients retry UNAVAILABLE once."""
import asyncio
import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
import websockets

from conftest import ROOT, Sluice
from test_upstream import free_port



class Nginx:
    """nginx (daemon off, its own prefix) with deploy/nginx/sluice.conf pointed at `instances`."""

    def __init__(self, folder, instances):
        text = (ROOT / "deploy" / "nginx" / "sluice.conf").read_text()
        http = iter([i.http_port for i in instances] * 2)  # two pools: HTTP calls and WebSocket sessions
        grpc_ports = iter(i.grpc_port for i in instances)
        text = re.sub(r"server 127\.0\.0\.1:808\d", lambda _: f"server 127.0.0.1:{next(http)}", text)
        text = re.sub(r"server 127\.0\.0\.1:889\d", lambda _: f"server 127.0.0.1:{next(grpc_ports)}", text)
        self.http_port, self.grpc_port = free_port(), free_port()
        text = text.replace("listen 8080;", f"listen 127.0.0.1:{self.http_port};")
        text = text.replace("listen 8888 http2;", f"listen 127.0.0.1:{self.grpc_port} http2;")
        temp = " ".join(f"{kind}_temp_path {folder}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = folder / "nginx.conf"
        conf.write_text(
            f"worker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log warn;\n"
            f"events {{ worker_connections 4096; }}\nhttp {{\naccess_log off;\n{temp}\n{text}\n}}\n"
        )
        self.process = subprocess.Popen(["nginx", "-p", str(folder), "-c", str(conf), "-g", "daemon off;"],
                                        stderr=subprocess.PIPE, text=True)
        for port in (self.http_port, self.grpc_port):
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket_check(port)
                    break
                except OSError:
                    assert self.process.poll() is None, self.process.stderr.read()
                    assert time.monotonic() < deadline, "nginx did not listen"
                    time.sleep(0.05)
        self.ws = f"ws://127.0.0.1:{self.http_port}"
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"

    def close(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def socket_check(port):
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


@pytest.fixture
def cluster(tmp_path):
    made = []

    def make(*flags):
        instances = []
        made.append(instances)  # closed even if nginx does not start
        for _ in range(3):
            instances.append(Sluice(*flags))
        nginx = Nginx(tmp_path, instances)
        made.append(nginx)
        return instances, nginx

    yield make
    for thing in made:
        for item in thing if isinstance(thing, list) else [thing]:
            item.close()


def rpcs(instance, transport, metric="sluice_rpcs_total"):
    """The instance's own count of RPCs on `transport`, from its /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{instance.http_port}/metrics", timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric + "{") and f'transport="{transport}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def say_hi_http(nginx, name):
    request = urllib.request.Request(f"{nginx.http}/hello.UserService/SayHi", data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["result"]


async def say_hi_ws(nginx, name):
    async with websockets.connect(f"{nginx.ws}/hello.UserService/SayHi") as ws:
        await ws.send(json.dumps({"name": name}))
        frames = [json.loads(t) async for t in ws]
    assert frames[-1]["$end"]["code"] == 0, frames
    return frames[0]["result"]


def test_nginx_spreads_every_transport_over_the_instances(cluster, stubs):
    instances, nginx = cluster()
    for n in range(30):
        assert say_hi_http(nginx, f"h{n}").startswith(f"hi h{n}")
        assert asyncio.run(say_hi_ws(nginx, f"w{n}")).startswith(f"hi w{n}")
    with grpc.insecure_channel(nginx.grpc_target) as channel:
        stub = stubs.hello_pb2_grpc.UserServiceStub(channel)
        for n in range(30):
            assert stub.SayHi(stubs.hello_pb2.Request(name=f"g{n}"), timeout=10).result.startswith(f"hi g{n}")
    counts = {t: [rpcs(i, t) for i in instances] for t in ("http", "websocket", "grpc")}
    print(f"calls per instance through nginx: {counts}")
    for transport, per_instance in counts.items():
        assert sum(per_instance) == 30, (transport, per_instance)
        assert all(c > 0 for c in per_instance), (transport, per_instance)


def test_a_sigtermed_instance_hands_its_load_to_the_others(cluster, stubs):
    instances, nginx = cluster("--pace-ms", "50", "--list-count", "100000", "--drain-timeout", "5")
    outcomes = {}

    async def session(key, ready):
        async with websockets.connect(f"{nginx.ws}/proto.StreamService/List") as ws:
            await ws.send(json.dumps({"pt": {"name": key, "value": 0}}))
            await ws.recv()
            ready.set()
            count = 0
            try:
                async for text in ws:
                    frame = json.loads(text)
                    if "$end" in frame:
                        outcomes[key] = ("end", frame["$end"]["code"], count)
                        return
                    count += 1
                    if key.startswith("late") and count >= 5:
                        outcomes[key] = ("streaming", None, count)
                        return
            except websockets.ConnectionClosed as closed:
                outcomes[key] = ("closed", closed.rcvd.code if closed.rcvd else None, count)

    stop = threading.Event()
    unary = {"ok": 0, "retried": 0, "lost": []}

    def unary_load():
        with grpc.insecure_channel(nginx.grpc_target) as channel:
            stub = stubs.hello_pb2_grpc.UserServiceStub(channel)
            n = 0
            while not stop.is_set():
                n += 1
                for attempt in (1, 2):
                    try:
                        if n % 2:
                            say_hi_http(nginx, f"u{n}")
                        else:
                            stub.SayHi(stubs.hello_pb2.Request(name=f"u{n}"), timeout=10)
                        unary["ok"] += 1
                        break
                    except (grpc.RpcError, urllib.error.HTTPError, urllib.error.URLError) as error:
                        retryable = (isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE) or (
                            isinstance(error, urllib.error.HTTPError) and error.code in (502, 503))
                        if attempt == 1 and retryable:
                            unary["retried"] += 1
                            continue
                        unary["lost"].append(repr(error))
                        break

    async def scenario():
        readies = []
        tasks = []
        for n in range(12):
            ready = asyncio.Event()
            readies.append(ready)
            tasks.append(asyncio.create_task(session(f"s{n}", ready)))
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 20)
        on_first = rpcs(instances[0], "websocket", "sluice_rpcs_active")
        load = threading.Thread(target=unary_load)
        load.start()
        await asyncio.sleep(0.5)
        code = await asyncio.to_thread(instances[0].terminate)
        # New sessions after the drain began go to the other instances.
        late = [asyncio.create_task(session(f"late{n}", asyncio.Event())) for n in range(6)]
        await asyncio.wait_for(asyncio.gather(*late), 20)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.to_thread(load.join)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return on_first, code

    on_first, code = asyncio.run(scenario())
    ended = [k for k, v in outcomes.items() if not k.startswith("late") and v[0] == "end"]
    print(f"sessions on the SIGTERMed instance: {on_first:.0f}; ended: {sorted(ended)}; unary: {unary['ok']} ok, "
          f"{unary['retried']} retried, {len(unary['lost'])} lost")
    assert code == 0
    assert on_first >= 1
    assert len(ended) == on_first, outcomes
    assert all(outcomes[k][1] == 14 for k in ended), outcomes
    assert all(outcomes[f"late{n}"][0] == "streaming" for n in range(6)), outcomes
    assert unary["ok"] > 20
    assert unary["lost"] == [], unary

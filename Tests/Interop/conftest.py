"""Fixtures for interop tests: a real `sluice` process and clients we did not write.

The binary comes from SLUICE_BIN (scripts/test.sh sets it to the freshly built one). Python
stubs are generated from Protos/ by grpcio-tools into a temporary folder for each run.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRPC_ADDRESS = re.compile(r"sluice\.grpc\.address=\S*:(\d+)")
HTTP_ADDRESS = re.compile(r"sluice\.http\.address=\S*:(\d+)")


@pytest.fixture(scope="session")
def stubs(tmp_path_factory):
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("stubs")
    protos = sorted(str(p) for p in (ROOT / "Protos").glob("*.proto"))
    args = ["protoc", f"-I{ROOT / 'Protos'}", f"--python_out={out}", f"--grpc_python_out={out}", *protos]
    assert protoc.main(args) == 0, "grpcio-tools could not compile Protos/"
    sys.path.insert(0, str(out))
    import data_pb2, data_pb2_grpc, hello_pb2, hello_pb2_grpc, stream_pb2, stream_pb2_grpc  # noqa: E401

    class Stubs:
        pass

    s = Stubs()
    for m in (data_pb2, data_pb2_grpc, hello_pb2, hello_pb2_grpc, stream_pb2, stream_pb2_grpc):
        setattr(s, m.__name__, m)
    return s


def json_stream(text):
    """JSON documents printed one after another (as `buf curl` prints each message, indented)."""
    import json

    decoder, values, index, text = json.JSONDecoder(), [], 0, text.strip()
    while index < len(text):
        value, index = decoder.raw_decode(text, index)
        values.append(value)
        while index < len(text) and text[index].isspace():
            index += 1
    return values


def make_pki(folder, key_type=None):
    """A test CA (trustme) and a certificate for 127.0.0.1 and localhost, written as PEM files in
    `folder`; returns their paths ("ca", "chain", "key"). `key_type`: trustme's (ECDSA by default)."""
    import trustme

    kind = {} if key_type is None else {"key_type": key_type}
    ca = trustme.CA(**kind)
    cert = ca.issue_cert("127.0.0.1", "localhost", **kind)
    paths = {"ca": folder / "ca.pem", "chain": folder / "chain.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(paths["ca"])
    cert.private_key_pem.write_to_path(paths["key"])
    with open(paths["chain"], "wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    return paths


class Sluice:
    """A running `sluice` process on loopback with OS-chosen ports."""

    def __init__(self, *extra, cwd=None):
        binary = str(Path(os.environ.get("SLUICE_BIN") or ROOT / ".build" / "release" / "sluice").resolve())
        assert Path(binary).exists(), f"sluice binary not found at {binary}: build it or set SLUICE_BIN"
        env = dict(os.environ, SWIFT_BACKTRACE="enable=no")
        self.process = subprocess.Popen(
            # Later flags override earlier ones, so `extra` may change any default here.
            [binary, "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--pace-ms", "0", *extra],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=cwd,
        )
        self.log = []
        found = threading.Event()
        self.grpc_port = None
        self.http_port = None

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
        assert found.wait(30), "sluice did not log its addresses within 30 s"
        assert self.grpc_port and self.http_port, "sluice exited before listening:\n" + "".join(self.log)
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.ws = f"ws://127.0.0.1:{self.http_port}"

    def rss_kib(self):
        """The process's resident set size, from /proc."""
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def log_lines(self, *needles):
        return [line for line in list(self.log) if all(n in line for n in needles)]

    def wait_for_log(self, *needles, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if lines := self.log_lines(*needles):
                return lines
            time.sleep(0.02)
        return self.log_lines(*needles)

    def terminate(self, sig=signal.SIGTERM, timeout=30):
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_sluice():
    started = []

    def start(*extra, cwd=None):
        s = Sluice(*extra, cwd=cwd)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


@pytest.fixture(scope="module")
def sluice():
    s = Sluice()
    yield s
    s.close()

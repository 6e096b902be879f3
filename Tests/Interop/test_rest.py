"""REST routes from google.api.http rules (upstream/lab.proto's), served for an upstream whose
descriptors Sluice loaded (`--descriptor-set`): path variables (single and multi-segment, nested
patterns, `**`, custom verbs), query parameters for the other fields (repeated, enums, well-known
types), `body: "*"` and `body: "field"`, `response_body`, additional bindings, errors as
`google.rpc.Status` JSON with gRPC's HTTP mapping, 405 with `Allow`, both ports (HTTP/1.1 and h2c).
Clients: Python's http.client and curl."""
import base64
import gzip
import http.client
import json
import subprocess

import pytest

from test_upstream import SERVICE, LabServer, lab  # noqa: F401  (the lab fixture)


@pytest.fixture(scope="module")
def rest(lab, tmp_path_factory):  # noqa: F811
    from conftest import Sluice

    upstream = LabServer(lab)
    s = Sluice("--upstream", f"{SERVICE}={upstream.address}", "--descriptor-set", str(lab.protoset))
    yield s
    s.close()
    upstream.kill()


def call(s, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=15)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        if response.getheader("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(data) if data else None
    finally:
        connection.close()


def test_get_with_path_and_query_parameters(rest):
    status, headers, reply = call(
        rest, "GET", "/v1/items/widget?count=5&mood=HAPPY&notes=a&notes=b+c&when=2024-01-02T03:04:05Z&text=hi%21",
        headers={"x-note": "rest"})
    assert status == 200, reply
    item = reply["item"]
    assert item["name"] == "widget" and item["count"] == "5" and item["mood"] == "HAPPY"
    assert item["notes"] == ["a", "b c"] and item["when"] == "2024-01-02T03:04:05Z" and item["text"] == "hi!"
    assert reply["metadata"]["x-note"] == "rest"  # request headers are metadata
    assert headers["grpc-metadata-x-upstream-initial"] == "lab"
    assert headers["content-type"] == "application/json"
    # Enum numbers and booleans-as-numbers are read by the field's kind.
    status, _, reply = call(rest, "GET", "/v1/items/w?mood=2&number=7")
    assert status == 200 and reply["item"]["mood"] == "GRUMPY" and reply["item"]["number"] == 7, reply


def test_post_body_star_with_the_path_winning(rest):
    status, _, reply = call(rest, "POST", "/v1/items/abc:echo", {"name": "zzz", "count": "3", "mood": "GRUMPY"},
                            headers={"Content-Type": "application/json"})
    assert status == 200, reply
    assert reply["item"]["name"] == "abc" and reply["item"]["count"] == "3" and reply["item"]["mood"] == "GRUMPY"
    # No body is an empty message; a body that is not an object is refused.
    status, _, reply = call(rest, "POST", "/v1/items/empty:echo")
    assert status == 200 and reply["item"]["name"] == "empty"
    status, _, reply = call(rest, "POST", "/v1/items/x:echo", [1])
    assert status == 400 and reply["code"] == 3 and "JSON object" in reply["message"], reply
    # body "*" leaves nothing for the query.
    status, _, reply = call(rest, "POST", "/v1/items/x:echo?count=1", {})
    assert status == 400 and "query" in reply["message"], reply


def test_nested_patterns_multi_segment_variables_and_decoding(rest):
    status, _, reply = call(rest, "GET", "/v1/shelves/s1/items/i2")
    assert status == 200 and reply["item"]["name"] == "shelves/s1/items/i2", reply
    # ** keeps %2F as sent; a single segment decodes it.
    status, _, reply = call(rest, "GET", "/v1/files/a/b%2Fc/d%20e")
    assert status == 200 and reply["item"]["name"] == "a/b%2Fc/d e", reply
    status, _, reply = call(rest, "GET", "/v1/items/a%2Fb%C3%A9")
    assert status == 200 and reply["item"]["name"] == "a/bé", reply
    status, _, reply = call(rest, "GET", "/v1/items/a%ZZ")
    assert status == 400 and reply["code"] == 3, reply


def test_body_field_and_response_body(rest):
    status, _, reply = call(rest, "PUT", "/v1/items/n1/notes?count=2", ["x", "y"])
    assert status == 200, reply
    # response_body "item": the Item alone, not the EchoReply around it.
    assert reply["name"] == "n1" and reply["notes"] == ["x", "y"] and reply["count"] == "2" and "metadata" not in reply


def test_errors_map_to_http_statuses(rest):
    status, headers, reply = call(rest, "GET", "/v1/fail/5?message=no+widget")
    assert status == 404 and reply["code"] == 5 and reply["message"] == "no widget", reply
    assert reply["trailers"]["x-upstream-trailer"] == ["failed"]
    status, _, reply = call(rest, "GET", "/v1/fail/9?message=nope")
    assert status == 400 and reply["code"] == 9
    # Rich errors: grpc-status-details-bin's Anys as JSON, each by its type when the descriptors
    # have it (upstream.lab.Item), else its bytes in base64 (StringValue: the set has no wrappers).
    status, _, reply = call(rest, "GET", "/v1/fail/5?message=with+details+and+an+item")
    assert status == 404 and reply["details"] == [
        {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "CgN3aHk="},
        {"@type": "type.googleapis.com/upstream.lab.Item", "name": "detail", "count": "2", "mood": "MOOD_UNSPECIFIED",
         "tags": {}, "notes": [], "blob": ""}], reply
    for query, words in [("bogus=1", "bogus"), ("name=y", "path"), ("mood=SAD", "mood"), ("count=abc", "count"),
                         ("tags=1", "map"), ("extra=1", "message"), ("count=1&count=2", "twice"),
                         ("when=yesterday", "when"), ("name.x=1", "not a message")]:
        status, _, reply = call(rest, "GET", f"/v1/items/x?{query}")
        assert status == 400 and reply["code"] == 3, (query, reply)
        assert words.lower() in reply["message"].lower(), (query, reply)
    # A path some rule has, with a method none has: 405 naming the ones it takes.
    status, headers, reply = call(rest, "DELETE", "/v1/items/x")
    assert status == 405 and headers["allow"] == "GET" and reply["code"] == 12, (headers, reply)
    # A GET route takes no body.
    status, _, reply = call(rest, "GET", "/v1/stats", "{}")
    assert status == 400 and "no request body" in reply["message"], reply
    # Paths no rule has keep the HTTP port's other answers.
    status, _, _ = call(rest, "GET", "/v1/unknown/path")
    assert status == 404


def test_unknown_query_parameters_can_be_ignored(lab, start_sluice):  # noqa: F811
    """--rest-ignore-unknown-query (Envoy's ignore_unknown_query_parameters): a parameter that names
    no field is skipped; one that names a field still has to fit it."""
    upstream = LabServer(lab)
    try:
        s = start_sluice("--upstream", f"{SERVICE}={upstream.address}", "--descriptor-set", str(lab.protoset),
                         "--rest-ignore-unknown-query")
        status, _, reply = call(s, "GET", "/v1/items/w?bogus=1&count=2&item.x=3&utm_source=mail")
        assert status == 200 and reply["item"]["count"] == "2", reply
        for query, words in [("count=abc", "count"), ("name.x=1", "not a message"), ("tags=1", "map")]:
            status, _, reply = call(s, "GET", f"/v1/items/w?{query}")
            assert status == 400 and words in reply["message"], (query, reply)
    finally:
        upstream.kill()


def test_rest_on_the_native_port_over_h2c_and_gzip(rest):
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-i",
                          f"http://127.0.0.1:{rest.grpc_port}/v1/items/h2?count=9"],
                         capture_output=True, text=True, timeout=15).stdout
    head, _, body = out.partition("\n\n") if "\r\n\r\n" not in out else out.partition("\r\n\r\n")
    assert head.startswith("HTTP/2 200"), out
    assert json.loads(body)["item"] == {**json.loads(body)["item"], "name": "h2", "count": "9"}
    status, _, reply = call(rest, "GET", "/v1/stats")
    assert status == 200 and "sumRead" in reply, reply
    # Request bodies may be gzip, as for HTTP JSON; one marked gzip that is not is the client's error.
    status, _, reply = call(rest, "POST", "/v1/items/g:echo", gzip.compress(b'{"count":"4"}'),
                            headers={"Content-Encoding": "gzip"})
    assert status == 200 and reply["item"]["count"] == "4", reply
    status, _, reply = call(rest, "POST", "/v1/items/g:echo", b'{"count":"4"}', headers={"Content-Encoding": "gzip"})
    assert status == 400 and reply["code"] == 3 and "does not inflate" in reply["message"], reply


def raw(s, path, accept=None):
    connection = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=15)
    try:
        connection.request("GET", path, headers={"Accept": accept} if accept else {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        connection.close()


def test_server_streaming_as_ndjson_sse_or_an_array(rest):
    status, headers, body = raw(rest, "/v1/count/3")
    assert status == 200 and headers["content-type"] == "application/x-ndjson", (headers, body)
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["name"] for line in lines] == ["lab-0", "lab-1", "lab-2"], body  # no envelope, no end line
    status, headers, body = raw(rest, "/v1/count/2?intervalMs=1", accept="text/event-stream")
    assert status == 200 and headers["content-type"] == "text/event-stream", headers
    events = [json.loads(chunk[len("data: "):]) for chunk in body.strip().split("\n\n")]
    assert [e["name"] for e in events] == ["lab-0", "lab-1"], body
    status, headers, body = raw(rest, "/v1/count/2", accept="application/json")
    assert status == 200 and [m["name"] for m in json.loads(body)] == ["lab-0", "lab-1"], body
    status, _, body = raw(rest, "/v1/count/0", accept="application/json")
    assert status == 200 and json.loads(body) == [], body
    status, _, body = raw(rest, "/v1/count/0")
    assert status == 200 and body == "", body


def test_a_stream_that_fails_midway_ends_with_its_status(rest):
    status, _, body = raw(rest, "/v1/count/5?payload_bytes=-1")
    lines = [json.loads(line) for line in body.splitlines()]
    assert status == 200 and lines[0]["name"] == "lab-0", body
    assert lines[-1]["code"] == 10 and lines[-1]["message"] == "stopped midway" and len(lines) == 2, body
    status, _, body = raw(rest, "/v1/count/5?payloadBytes=-1", accept="text/event-stream")
    assert "event: error\ndata: " in body and '"code":10' in body, body
    status, _, body = raw(rest, "/v1/count/5?payloadBytes=-1", accept="application/json")
    values = json.loads(body)
    assert values[0]["name"] == "lab-0" and values[-1]["code"] == 10, body
    # A failure before the first message gets its HTTP status.
    status, _, body = raw(rest, "/v1/count/x")
    assert status == 400 and json.loads(body)["code"] == 3, body


def test_client_streaming_from_an_ndjson_body(rest):
    body = '{"count":"1"}\n{"count":"2"}\n\n{"count":"4"}'  # a blank line is skipped; the last needs no newline
    status, _, reply = call(rest, "POST", "/v1/sum", body, headers={"Content-Type": "application/x-ndjson"})
    assert status == 200 and reply == {"sum": "7", "items": 3}, reply
    status, _, reply = call(rest, "POST", "/v1/sum")
    assert status == 200 and reply == {"sum": "0", "items": 0}, reply
    # A line that is not a message ends the call naming the line; a query with body "*" is refused.
    status, _, reply = call(rest, "POST", "/v1/sum", '{"count":"1"}\n[2]\n')
    assert status == 400 and reply["code"] == 3 and "line 2" in reply["message"], reply
    status, _, reply = call(rest, "POST", "/v1/sum", '{"count":"x"}\n')
    assert status == 400 and "line 1" in reply["message"] and "count" in reply["message"], reply
    status, _, reply = call(rest, "POST", "/v1/sum", '{"count":"1"}\n', headers={"Content-Encoding": "gzip"})
    assert status == 415 and reply["code"] == 3 and "send identity" in reply["message"], (status, reply)
    # Over h2c on the native port, from curl.
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "--data-binary", "@-",
                          f"http://127.0.0.1:{rest.grpc_port}/v1/sum"],
                         input='{"count":"5"}\n{"count":"6"}\n', capture_output=True, text=True, timeout=15).stdout
    assert json.loads(out) == {"sum": "11", "items": 2}, out


def test_bidi_streams_both_ways_at_once(rest):
    """Each request line is answered before the next is sent: the body and the answer stream
    together on one HTTP/1.1 exchange (chunked both ways). The path's variable is set on every
    message."""
    import socket

    with socket.create_connection(("127.0.0.1", rest.http_port), timeout=15) as sock:
        sock.sendall(b"POST /v1/chat/room HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: application/x-ndjson\r\n\r\n")
        reader = sock.makefile("rb")

        def chunk(data):
            sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

        def read_chunk():
            size = int(reader.readline().strip(), 16)
            data = reader.read(size)
            reader.readline()
            return data

        chunk(b'{"count":"1"}\n')
        status = reader.readline()
        assert b" 200 " in status, status
        headers = {}
        while (line := reader.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        assert headers["content-type"] == "application/x-ndjson" and headers["grpc-metadata-x-upstream-initial"] == "lab"
        replies = []
        for count in (1, 2, 3):
            if count > 1:
                chunk(b'{"count":"%d"}\n' % count)
            data = b""
            while not data.endswith(b"\n"):
                data += read_chunk()
            replies.append(json.loads(data))
        assert [(r["item"]["name"], r["item"]["count"]) for r in replies] == [("room", "1"), ("room", "2"), ("room", "3")]
        sock.sendall(b"0\r\n\r\n")
        assert read_chunk() == b""  # the stream ends when the client's does


def test_http_body_in_and_out(rest):
    """google.api.HttpBody: the raw request body (and its Content-Type) as the message or its
    `body` field; the raw answer with the message's own type; streams of raw chunks both ways."""
    png = bytes(range(256)) * 4
    status, _, reply = call(rest, "POST", "/v1/upload", png, headers={"Content-Type": "image/png"})
    assert status == 200 and reply["text"] == "image/png" and reply["count"] == "1024", reply
    assert base64.b64decode(reply["blob"]) == png
    status, _, reply = call(rest, "POST", "/v1/attach/report.csv?unused=1", b"a,b\n1,2\n",
                            headers={"Content-Type": "text/csv"})
    assert status == 400 and "unused" in reply["message"], reply  # the query still names fields
    status, _, reply = call(rest, "POST", "/v1/attach/report.csv", b"a,b\n1,2\n", headers={"Content-Type": "text/csv"})
    assert status == 200 and reply["name"] == "report.csv" and reply["text"] == "text/csv", reply
    assert base64.b64decode(reply["blob"]) == b"a,b\n1,2\n"
    connection = http.client.HTTPConnection("127.0.0.1", rest.http_port, timeout=15)
    connection.request("GET", "/v1/download/ab?count=3&text=application/x-thing")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "application/x-thing"
    assert response.getheader("grpc-metadata-x-upstream-initial") == "lab" and response.read() == b"ababab"
    connection.request("GET", "/v1/chunks/3")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/x-chunks"
    assert response.read() == b"chunk-0\nchunk-1\nchunk-2\n"
    connection.close()
    # A failure before the first chunk is the JSON error; an upload in chunks is a message a chunk.
    status, _, reply = call(rest, "GET", "/v1/chunks/x")
    assert status == 400 and reply["code"] == 3, reply
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "--data-binary", "@-", "-H",
                          "Content-Type: application/octet-stream", f"http://127.0.0.1:{rest.grpc_port}/v1/chunks"],
                         input=b"x" * 100_000, capture_output=True, timeout=15).stdout
    total = json.loads(out)
    assert total["sum"] == "100000" and total["items"] >= 1, total
    # The OpenAPI document says the bodies are of any type.
    _, _, document = call(rest, "GET", "/openapi.json")
    upload = document["paths"]["/v1/upload"]["post"]
    assert upload["requestBody"]["content"] == {"*/*": {}}
    assert document["paths"]["/v1/download/{name}"]["get"]["responses"]["200"]["content"] == {"*/*": {}}


def test_rest_over_tls_with_descriptors_from_reflection(lab, start_sluice, tmp_path):  # noqa: F811
    """Proxied routes whose descriptors came over the upstream's reflection (no descriptor set)
    and a hosted method's --http-rule route, over TLS on both ports: HTTPS (HTTP/1.1) on the HTTP
    port and HTTP/2 over TLS (ALPN h2) on the native port."""
    import ssl

    from conftest import make_pki

    pki = make_pki(tmp_path)
    upstream = LabServer(lab)
    try:
        s = start_sluice("--upstream", f"{SERVICE}={upstream.address}", "--upstream-reflection",
                         "--tls-cert", str(pki["chain"]), "--tls-key", str(pki["key"]),
                         "--http-rule", "hello.UserService.SayHi GET /v1/hi/{name}")
        context = ssl.create_default_context(cafile=str(pki["ca"]))
        connection = http.client.HTTPSConnection("127.0.0.1", s.http_port, timeout=15, context=context)
        try:
            connection.request("GET", "/v1/items/tls?count=2&mood=HAPPY")
            response = connection.getresponse()
            reply = json.loads(response.read())
            assert response.status == 200 and reply["item"]["count"] == "2" and reply["item"]["mood"] == "HAPPY"
            connection.request("POST", "/v1/sum", body='{"count":"4"}\n{"count":"5"}\n')
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read()) == {"sum": "9", "items": 2}
            connection.request("GET", "/v1/hi/ada")
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read())["result"].startswith("hi ada---")
            connection.request("GET", "/openapi.json")
            paths = json.loads(connection.getresponse().read())["paths"]
            assert {"/v1/items/{name}", "/v1/sum", "/v1/hi/{name}"} <= set(paths), paths
        finally:
            connection.close()
        out = subprocess.run(["curl", "-s", "-i", "--http2", "--cacert", str(pki["ca"]),
                              f"https://127.0.0.1:{s.grpc_port}/v1/count/2"],
                             capture_output=True, text=True, timeout=15).stdout
        head, _, body = out.partition("\n\n")  # text mode: curl's \r\n read as \n
        assert head.startswith("HTTP/2 200"), out
        assert [json.loads(line)["name"] for line in body.splitlines()] == ["lab-0", "lab-1"], out
    finally:
        upstream.kill()


def test_http_rule_flags_and_config_file_route_hosted_methods(start_sluice, tmp_path):
    s = start_sluice("--http-rule", "hello.UserService.SayHi GET /v1/hi/{name}",
                     "--http-rule", "/proto.StreamService/List GET /v1/points/{pt.name} response_body=pt")
    status, _, reply = call(s, "GET", "/v1/hi/ada")
    assert status == 200 and reply["result"].startswith("hi ada---"), reply
    status, _, body = raw(s, "/v1/points/p?pt.value=3")
    points = [json.loads(line) for line in body.splitlines()]
    assert status == 200 and len(points) > 1 and points[0] == {"name": "p", "value": 3}, body
    # The same from the configuration file (a list of rules, as for every list flag).
    config = tmp_path / "sluice.yaml"
    config.write_text('http-rule:\n  - "hello.UserService.SayHi POST /v1/hi body=*"\n')
    s = start_sluice("--config", str(config))
    status, _, reply = call(s, "POST", "/v1/hi", {"name": "bo"})
    assert status == 200 and reply["result"].startswith("hi bo---"), reply


def test_api_configuration_rules_in_the_config_file(start_sluice, tmp_path):
    """The file's `http: rules:` section, in gRPC API Configuration's shape (selector, a method
    key or custom, body, response_body, additional_bindings), in YAML and in JSON, beside the
    flags' own keys and an `http-rule` list."""
    config = tmp_path / "sluice.yaml"
    config.write_text("""
list-count: 2
http-rule: ["hello.UserService.SayHi GET /v1/flat/{name}"]
http:
  rules:
    - selector: hello.UserService.SayHi
      get: /v1/hi/{name}
      additional_bindings:
        - post: /v1/hi
          body: "*"
        - custom:
            kind: SEARCH
            path: /v1/search/{name}
    - selector: proto.StreamService.List
      get: /v1/points/{pt.name}
      response_body: pt
""")
    s = start_sluice("--config", str(config))
    for method, path, body in [("GET", "/v1/hi/ada", None), ("POST", "/v1/hi", {"name": "ada"}),
                               ("SEARCH", "/v1/search/ada", None), ("GET", "/v1/flat/ada", None)]:
        status, _, reply = call(s, method, path, body)
        assert status == 200 and reply["result"].startswith("hi ada---"), (method, path, reply)
    status, _, body = raw(s, "/v1/points/p")
    points = [json.loads(line) for line in body.splitlines()]
    assert status == 200 and [p["name"] for p in points] == ["p", "p"], body  # list-count 2 from the same file
    config = tmp_path / "sluice.json"
    config.write_text(json.dumps({"http": {"rules": [{"selector": "hello.UserService.SayHi", "put": "/v1/j/{name}"}]}}))
    s = start_sluice("--config", str(config))
    status, _, reply = call(s, "PUT", "/v1/j/bo")
    assert status == 200 and reply["result"].startswith("hi bo---"), reply


@pytest.mark.parametrize("section, words", [
    ("http:\n  rules:\n    - get: /v1/x\n", "'selector' (pkg.Service.Method) is missing"),
    ("http:\n  rules:\n    - selector: a.B.C\n      gett: /v1/x\n", "'gett' is not a key of an HTTP rule"),
    ("http:\n  rules:\n    - selector: a.B.C\n      get: /v1/x\n      post: /v1/y\n", "not 2"),
    ("http:\n  rules:\n    - selector: a.B.C\n      get: v1/x\n", "does not start with /"),
    ("http:\n  rulez: []\n", "'rulez' is not supported"),
    ("http:\n  rules:\n    - selector: a.B.C\n      get: /v1/x\n      additional_bindings:\n"
     "        - {selector: a.B.D, get: /v1/y}\n", "no selector or additional_bindings of its own"),
])
def test_a_bad_http_section_stops_the_gateway_naming_it(tmp_path, section, words):
    import os
    from conftest import ROOT
    binary = os.environ.get("SLUICE_BIN") or str(ROOT / ".build" / "release" / "sluice")
    config = tmp_path / "sluice.yaml"
    config.write_text(section)
    out = subprocess.run([binary, "--config", str(config)], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, SWIFT_BACKTRACE="enable=no"))
    assert out.returncode == 64 and words in out.stderr, out.stderr


@pytest.mark.parametrize("rule, words", [
    ("SayHi GET /v1/hi", "is not pkg.Service.Method"),
    ("hello.UserService.SayHi get /v1/hi", "is not an HTTP method"),
    ("hello.UserService.SayHi GET v1/hi", "does not start with /"),
    ("hello.UserService.SayHi GET /v1/hi bogus=1", "is not body=FIELD"),
])
def test_a_bad_http_rule_stops_the_gateway_naming_it(rule, words):
    import os
    from conftest import ROOT
    binary = os.environ.get("SLUICE_BIN") or str(ROOT / ".build" / "release" / "sluice")
    out = subprocess.run([binary, "--http-rule", rule], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, SWIFT_BACKTRACE="enable=no"))
    assert out.returncode == 64 and words in out.stderr, out.stderr


def test_an_http_rule_for_an_unknown_method_is_logged_and_left_out(start_sluice):
    s = start_sluice("--http-rule", "hello.UserService.Nope GET /v1/nope", "--http-rule",
                     "hello.UserService.SayHi GET /v1/hi/{nope}", "--http-rule", "hello.UserService.SayHi GET /v1/ok")
    status, _, reply = call(s, "GET", "/v1/ok?name=x")
    assert status == 200 and reply["result"].startswith("hi x---"), reply
    import time
    deadline = time.time() + 5
    while time.time() < deadline and sum("REST route left out" in line for line in s.log) < 2:
        time.sleep(0.1)
    log = "".join(s.log)
    assert "/hello.UserService/Nope: no such method" in log and "binds nope" in log, log


def test_openapi_document_is_valid_and_describes_the_routes(rest):
    from openapi_spec_validator import validate

    status, headers, document = call(rest, "GET", "/openapi.json")
    assert status == 200 and headers["content-type"] == "application/json"
    validate(document)  # OpenAPI 3.1, by openapi-spec-validator
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    assert set(paths) >= {"/v1/items/{name}:echo", "/v1/items/{name}", "/v1/{name}", "/v1/items/{name}/notes",
                          "/v1/files/{name}", "/v1/fail/{code}", "/v1/count/{count}", "/v1/stats"}, paths
    summed = paths["/v1/sum"]["post"]  # client streaming: an NDJSON body, one message a line
    assert summed["requestBody"]["content"] == {
        "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/upstream.lab.Item"}}}
    assert summed["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/upstream.lab.Total"}
    chat = paths["/v1/chat/{name}"]["post"]["responses"]["200"]["content"]
    assert set(chat) == {"application/x-ndjson", "text/event-stream", "application/json"}
    get_item = paths["/v1/items/{name}"]["get"]
    query = {p["name"]: p["schema"] for p in get_item["parameters"] if p["in"] == "query"}
    assert query["count"] == {"type": "string", "format": "int64"}
    assert query["mood"]["enum"] == ["MOOD_UNSPECIFIED", "HAPPY", "GRUMPY"]
    assert query["notes"] == {"type": "array", "items": {"type": "string"}}
    assert query["when"] == {"type": "string", "format": "date-time"} and "tags" not in query and "name" not in query
    assert get_item["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/upstream.lab.EchoReply"}
    echo = paths["/v1/items/{name}:echo"]["post"]
    assert echo["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/upstream.lab.Item"}
    assert "parameters" in echo and all(p["in"] == "path" for p in echo["parameters"])  # body "*": no query
    notes = paths["/v1/items/{name}/notes"]["put"]
    assert notes["requestBody"]["content"]["application/json"]["schema"] == {"type": "array", "items": {"type": "string"}}
    assert notes["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/upstream.lab.Item"}
    count = paths["/v1/count/{count}"]["get"]["responses"]["200"]["content"]
    assert set(count) == {"application/x-ndjson", "text/event-stream", "application/json"}
    # The protos' comments (the descriptor set has them: --include_source_info) are descriptions.
    assert paths["/v1/stats"]["get"]["description"] == "Reads only: Connect clients may call it with GET."
    reply = document["components"]["schemas"]["upstream.lab.EchoReply"]
    assert reply["properties"]["metadata"]["description"] == (
        "The request metadata the upstream received (binary values base64).")
    assert document["components"]["schemas"]["upstream.lab.Total"]["description"] == "What Sum and UploadChunks add up."
    assert paths["/v1/count/{count}"]["get"]["x-grpc-method"] == "/upstream.lab.Lab/Count"
    assert paths["/v1/items/{name}/notes"]["put"]["x-http-rule"] == {"body": "notes", "responseBody": "item"}
    item = document["components"]["schemas"]["upstream.lab.Item"]["properties"]
    assert item["tags"] == {"type": "object", "additionalProperties": {"type": "integer", "format": "int32"}}
    assert item["extra"] == {"type": "object"} and item["blob"] == {"type": "string", "contentEncoding": "base64"}


def test_sluice_openapi_prints_the_same_document(rest, lab):  # noqa: F811
    """`sluice openapi` without a gateway: from the descriptor set, and from the upstream's own
    reflection, the document is the one the gateway serves; rules left out are named on stderr."""
    import os
    from conftest import ROOT

    binary = os.environ.get("SLUICE_BIN") or str(ROOT / ".build" / "release" / "sluice")
    _, _, served = call(rest, "GET", "/openapi.json")
    out = subprocess.run([binary, "openapi", "--descriptor-set", str(lab.protoset)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and json.loads(out.stdout) == served, out.stderr
    upstream = LabServer(lab)
    try:
        out = subprocess.run([binary, "openapi", upstream.address, "--http-rule",
                              "upstream.lab.Lab.GetStats GET /v2/stats", "--http-rule", "upstream.lab.Lab.Nope GET /x"],
                             capture_output=True, text=True, timeout=30)
    finally:
        upstream.kill()
    document = json.loads(out.stdout)
    assert out.returncode == 0 and "/v2/stats" in document["paths"] and "/v1/stats" not in document["paths"]
    assert "/v1/items/{name}" in document["paths"] and "upstream.lab.Lab/Nope: no such method" in out.stderr, out.stderr


def test_openapi_is_behind_the_bearer_check(start_sluice, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret\n")
    s = start_sluice("--require-bearer", f"file:{tokens}", "--http-rule", "hello.UserService.SayHi GET /v1/hi/{name}")
    status, headers, reply = call(s, "GET", "/openapi.json")
    assert status == 401 and reply["code"] == 16 and headers["www-authenticate"] == "Bearer"
    status, _, document = call(s, "GET", "/openapi.json", headers={"Authorization": "Bearer s3cret"})
    assert status == 200 and list(document["paths"]) == ["/v1/hi/{name}"]
    # The routes themselves: nothing about them is told without the token (not 405, not 400).
    for method, path in [("GET", "/v1/hi/ada"), ("DELETE", "/v1/hi/ada"), ("GET", "/v1/hi/%ZZ")]:
        status, headers, reply = call(s, method, path)
        assert status == 401 and reply["code"] == 16 and headers["www-authenticate"] == "Bearer", (method, path, reply)
    status, _, reply = call(s, "GET", "/v1/hi/ada", headers={"Authorization": "Bearer s3cret"})
    assert status == 200 and reply["result"].startswith("hi ada---"), reply


def test_schemathesis_finds_no_server_error(rest):
    """schemathesis (PyPI) generates requests from /openapi.json and checks that none gets a 5xx.
    Left out: Count (a stream of as many items as asked, up to 2^31), Fail (whose upstream
    answers the error code it is given, 13 and 14 included), and Sum and Chat (their bodies are
    NDJSON, which schemathesis does not write), DownloadChunks and Download (as many chunks or
    copies as asked). Its coverage phase is left out too:
    it sends methods no rule has (TRACE) to paths whose variables it cannot shape, which the HTTP
    port answers 501 as for any unknown method."""
    import shutil

    schemathesis = shutil.which("schemathesis") or shutil.which("st")
    assert schemathesis, "schemathesis is missing: python3 -m pip install schemathesis"
    out = subprocess.run(
        [schemathesis, "run", f"http://127.0.0.1:{rest.http_port}/openapi.json", "--checks", "not_a_server_error",
         "-n", "50", "--seed", "1", "--phases", "examples,fuzzing,stateful", "--exclude-path-regex",
         "^/v1/(count|fail|sum|chat|chunks|download)", "--request-timeout", "10"],
        capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]
    assert "Tested: 8" in out.stdout and " passed" in out.stdout, out.stdout[-2000:]

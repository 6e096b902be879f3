"""The upstream of the upstream tests: a Python grpcio server (not written with Sluice's code)
hosting upstream.lab.Lab, with grpcio-reflection and grpcio-health-checking.

Usage: python3 lab_server.py STUBS_DIR PORT [--name NAME] [--reflection v1alpha|both] [--tls CHAIN KEY]

grpcio-reflection serves grpc.reflection.v1alpha only; with `--reflection both` (the default) the
same servicer is also registered as grpc.reflection.v1, whose messages are v1alpha's under a new
package name (the same bytes on the wire).
Prints "listening PORT" once serving. STUBS_DIR holds lab_pb2/lab_pb2_grpc (grpcio-tools).
"""
import base64
import sys
import threading
import time
from concurrent import futures

import grpc
from google.api import httpbody_pb2
from google.protobuf import any_pb2, wrappers_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2

sys.path.insert(0, sys.argv[1])
import lab_pb2  # noqa: E402
import lab_pb2_grpc  # noqa: E402

NAME = sys.argv[sys.argv.index("--name") + 1] if "--name" in sys.argv else "lab"
REFLECTION = sys.argv[sys.argv.index("--reflection") + 1] if "--reflection" in sys.argv else "both"
stats_lock = threading.Lock()
stats = {"cancelled": 0, "sum_read": 0, "count_sent": 0}
HEALTH = health.HealthServicer()


def seen_metadata(context):
    seen = {}
    for key, value in context.invocation_metadata():
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        seen[key] = value if key not in seen else seen[key] + "," + value
    return seen


def remaining(context):
    left = context.time_remaining()
    return 0.0 if left is None or left > 1e6 else left



def status_bytes(code, message, *details):
    """A serialized google.rpc.Status (code = 1, message = 2, details = 3), by hand: googleapis'
    generated types are not installed here."""
    def varint(n):
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            out += bytes([byte | (0x80 if n else 0)])
            if not n:
                return out
    text = message.encode()
    return (b"\x08" + varint(code) + b"\x12" + varint(len(text)) + text
            + b"".join(b"\x1a" + varint(len(detail)) + detail for detail in details))

class Lab(lab_pb2_grpc.LabServicer):
    def Echo(self, request, context):
        context.send_initial_metadata((("x-upstream-initial", NAME),))
        context.set_trailing_metadata((("x-upstream-trailer", "done"), ("x-upstream-bin", b"\x00\x01\xfe")))
        return lab_pb2.EchoReply(item=request, metadata=seen_metadata(context), time_remaining=remaining(context))

    def Fail(self, request, context):
        trailers = [("x-upstream-trailer", "failed")]
        if request.message.startswith("with details"):
            # A google.rpc.Status with one detail (a StringValue), as rich errors carry it.
            details = [any_pb2.Any(type_url="type.googleapis.com/google.protobuf.StringValue",
                                   value=wrappers_pb2.StringValue(value="why").SerializeToString())]
            if "and an item" in request.message:  # a second detail of a type of this service's own
                details.append(any_pb2.Any(type_url="type.googleapis.com/upstream.lab.Item",
                                           value=lab_pb2.Item(name="detail", count=2).SerializeToString()))
            trailers.append(("grpc-status-details-bin", status_bytes(
                request.code, request.message, *(detail.SerializeToString() for detail in details))))
        context.set_trailing_metadata(tuple(trailers))
        context.abort(grpc.StatusCode(next(c.value for c in grpc.StatusCode if c.value[0] == request.code)), request.message)

    def Count(self, request, context):
        if request.payload_bytes < 0:  # one item, then a failure (a stream that breaks midway)
            yield lab_pb2.Item(name=f"{NAME}-0")
            context.abort(grpc.StatusCode.ABORTED, "stopped midway")
        try:
            for i in range(request.count):
                if not context.is_active():
                    break
                notes = ["x" * request.payload_bytes] if request.payload_bytes else []
                yield lab_pb2.Item(name=f"{NAME}-{i}", count=i, notes=notes)
                with stats_lock:
                    stats["count_sent"] += 1
                if request.interval_ms:
                    time.sleep(request.interval_ms / 1000)
        finally:
            if not context.is_active():
                with stats_lock:
                    stats["cancelled"] += 1

    def Sum(self, request_iterator, context):
        total, items = 0, 0
        for item in request_iterator:
            total += item.count
            items += 1
            with stats_lock:
                stats["sum_read"] += 1
        return lab_pb2.Total(sum=total, items=items)

    def SlowSum(self, request_iterator, context):
        total, items = 0, 0
        for request in request_iterator:
            if items == 0:
                time.sleep(request.count / 1000)
            total += request.count
            items += 1
        return lab_pb2.Total(sum=total, items=items)

    def Chat(self, request_iterator, context):
        context.send_initial_metadata((("x-upstream-initial", NAME),))
        try:
            for item in request_iterator:
                yield lab_pb2.EchoReply(item=item, metadata={"server": NAME})
        finally:
            if not context.is_active():
                with stats_lock:
                    stats["cancelled"] += 1

    def SetHealth(self, request, context):
        status = health_pb2.HealthCheckResponse.ServingStatus.Value(request.name)
        for service in ("", "upstream.lab.Lab"):
            HEALTH.set(service, status)
        return request

    def GetStats(self, request, context):
        with stats_lock:
            return lab_pb2.Stats(**stats)

    def Upload(self, request, context):
        return lab_pb2.Item(name="upload", text=request.content_type, count=len(request.data), blob=request.data)

    def Attach(self, request, context):
        return lab_pb2.Item(name=request.name, text=request.file.content_type, count=len(request.file.data),
                            blob=request.file.data)

    def Download(self, request, context):
        context.send_initial_metadata((("x-upstream-initial", NAME),))
        return httpbody_pb2.HttpBody(content_type=request.text or "text/plain",
                                     data=(request.name * request.count).encode())

    def DownloadChunks(self, request, context):
        for n in range(request.count):
            if n == 1 and request.payload_bytes < 0:
                context.abort(grpc.StatusCode.DATA_LOSS, "stopped midway")
            yield httpbody_pb2.HttpBody(content_type="text/x-chunks", data=f"chunk-{n}\n".encode())

    def UploadChunks(self, request_iterator, context):
        size, chunks = 0, 0
        for chunk in request_iterator:
            size += len(chunk.data)
            chunks += 1
        return lab_pb2.Total(sum=size, items=chunks)


def main():
    port = int(sys.argv[2])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    lab_pb2_grpc.add_LabServicer_to_server(Lab(), server)
    HEALTH.set("upstream.lab.Lab", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(HEALTH, server)
    names = (lab_pb2.DESCRIPTOR.services_by_name["Lab"].full_name, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    if REFLECTION == "both":
        servicer = reflection.ReflectionServicer(names)
        v1 = grpc.method_handlers_generic_handler("grpc.reflection.v1.ServerReflection", {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        })
        server.add_generic_rpc_handlers((v1,))
    if "--tls" in sys.argv:
        chain, key = sys.argv[sys.argv.index("--tls") + 1:sys.argv.index("--tls") + 3]
        with open(chain, "rb") as c, open(key, "rb") as k:
            credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
        bound = server.add_secure_port(f"127.0.0.1:{port}", credentials)
    else:
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"listening {bound}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()

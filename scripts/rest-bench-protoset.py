#!/usr/bin/env python3
"""Writes the seed's descriptor set (Protos/sluice.binpb) with google.api.http rules on two of its
methods, for the REST rows of scripts/bench.sh: Envoy's grpc_json_transcoder reads rules only from
descriptors, and these are the routes Sluice is given with --http-rule in the same run.

    GET /v1/hi/{name}          hello.UserService.SayHi
    GET /v1/points/{pt.name}   proto.StreamService.List

Usage: rest-bench-protoset.py OUT.binpb (needs protobuf and googleapis-common-protos from PyPI)."""
import sys
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

RULES = {("hello", "UserService", "SayHi"): "/v1/hi/{name}",
         ("proto", "StreamService", "List"): "/v1/points/{pt.name}"}

seed = Path(__file__).resolve().parent.parent / "Protos" / "sluice.binpb"
files = descriptor_pb2.FileDescriptorSet.FromString(seed.read_bytes())
# The imports the rules need, first and in order: Envoy builds the files in the set's order.
imports = [descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
           for module in (descriptor_pb2, http_pb2, annotations_pb2)]
rest = [f for f in files.file if f.name not in {proto.name for proto in imports}]
del files.file[:]
files.file.extend(imports + rest)
for file in files.file:
    for service in file.service:
        for method in service.method:
            template = RULES.get((file.package, service.name, method.name))
            if template is None:
                continue
            method.options.Extensions[annotations_pb2.http].get = template
            if "google/api/annotations.proto" not in file.dependency:
                file.dependency.append("google/api/annotations.proto")
Path(sys.argv[1]).write_bytes(files.SerializeToString())

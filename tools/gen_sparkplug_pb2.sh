#!/usr/bin/env bash
# Regenerates ids/protocols/mqtt/sparkplug/sparkplug_b_pb2.py from the Eclipse Tahu schema beside it
# (sparkplug_b.proto, EPL-2.0, as shipped in the pysparkplug 0.6.1 sdist). Run once when the schema or the
# protobuf major version changes; the generated module is committed so otids needs no protoc at run time.
# Needs grpcio-tools (pip install grpcio-tools), whose bundled protoc must match the protobuf runtime's major
# version (pyproject.toml pins protobuf).
set -euo pipefail
cd "$(dirname "$0")/../ids/protocols/mqtt/sparkplug"
python3 -m grpc_tools.protoc --proto_path=. --python_out=. sparkplug_b.proto
python3 -m grpc_tools.protoc --version

#!/usr/bin/env bash
# Generates the Python client code of proto/ into tidemark/v1/ (committed; do not edit it):
# messages (*_pb2.py) and gRPC stubs (*_pb2_grpc.py). Uses Debian's protoc and gRPC plugin:
#   apt-get install protobuf-compiler protobuf-compiler-grpc
# Usage: clients/python/generate.sh [OUT_DIR]   (default: clients/python; npm run gen:python)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$here}
plugin=$(command -v grpc_python_plugin || true)
if ! command -v protoc >/dev/null 2>&1 || [ -z "$plugin" ]; then
  echo "generate.sh: needs protoc and grpc_python_plugin: apt-get install protobuf-compiler protobuf-compiler-grpc" >&2
  exit 1
fi
mkdir -p "$out/tidemark/v1"
# Relative paths, so the generated files name proto/ the same wherever the repository is.
cd "$repo/proto"
protoc -I . --python_out="$out" --grpc_python_out="$out" --plugin=protoc-gen-grpc_python="$plugin" tidemark/v1/*.proto
for init in "$out/tidemark/__init__.py" "$out/tidemark/v1/__init__.py"; do
  [ -f "$init" ] || printf '# Generated package of proto/tidemark/v1 (clients/python/generate.sh).\n' > "$init"
done

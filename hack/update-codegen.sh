#!/usr/bin/env bash
# Regenerate the Python gRPC stubs (and their .pyi) from cri/api/v1/api.proto.
set -o errexit -o nounset -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
out="${1:-${BERTH_ROOT}}"
cd "${BERTH_ROOT}"
"${PY}" -m grpc_tools.protoc -I . \
  --python_out="${out}" \
  --grpc_python_out="${out}" \
  --plugin=protoc-gen-mypy="${BERTH_VENV}/bin/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="${BERTH_VENV}/bin/protoc-gen-mypy_grpc" \
  --mypy_out="${out}" --mypy_grpc_out="${out}" \
  cri/api/v1/api.proto cri/api/admin/v1/admin.proto

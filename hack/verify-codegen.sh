#!/usr/bin/env bash
# Fail when the committed stubs differ from what hack/update-codegen.sh writes.
set -o errexit -o nounset -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
"${BERTH_ROOT}/hack/update-codegen.sh" "${tmp}"
status=0
for f in api_pb2.py api_pb2.pyi api_pb2_grpc.py api_pb2_grpc.pyi; do
  if ! diff -q "${tmp}/cri/api/v1/${f}" "${BERTH_ROOT}/cri/api/v1/${f}" >/dev/null; then
    echo "stale generated file: cri/api/v1/${f} (run hack/update-codegen.sh)" >&2
    status=1
  fi
done
exit "${status}"

#!/usr/bin/env bash
# Fail when the committed stubs differ from what hack/update-codegen.sh writes.
set -o errexit -o nounset -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
"${BERTH_ROOT}/hack/update-codegen.sh" "${tmp}"
status=0
for f in v1/api admin/v1/admin; do
  for ext in _pb2.py _pb2.pyi _pb2_grpc.py _pb2_grpc.pyi; do
    if ! diff -q "${tmp}/cri/api/${f}${ext}" "${BERTH_ROOT}/cri/api/${f}${ext}" >/dev/null; then
      echo "stale generated file: cri/api/${f}${ext} (run hack/update-codegen.sh)" >&2
      status=1
    fi
  done
done
exit "${status}"

#!/usr/bin/env bash
# Import boundaries: cri -> shim (client side), snapshotter; shim and snapshotter never import
# cri or each other; shim imports only the standard library.
set -o errexit -o nounset -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"${PY}" "${BERTH_ROOT}/hack/check_imports.py" "${BERTH_ROOT}"

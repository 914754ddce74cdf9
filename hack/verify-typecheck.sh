#!/usr/bin/env bash
# mypy --strict on the three packages (generated stubs excluded by pyproject.toml).
set -o errexit -o nounset -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${BERTH_ROOT}"
mypy --strict cri shim snapshotter

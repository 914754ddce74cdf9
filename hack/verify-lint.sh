#!/usr/bin/env bash
# ruff lint and format check.
set -o errexit -o nounset -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "${BERTH_ROOT}"
ruff check cri shim snapshotter tests e2e hack
ruff format --check cri shim snapshotter tests e2e hack

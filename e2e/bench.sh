#!/usr/bin/env bash
# The side-by-side CRI benchmark, berth vs containerd (see e2e/bench/__init__.py). As root:
#   e2e/bench.sh [--quick] [--out DIR] [--workloads podstart,exec,...] [--reps N] ...
set -o errexit -o nounset -o pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
exec "${root}/.venv/bin/python" -m e2e.bench "$@"

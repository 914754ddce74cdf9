#!/usr/bin/env bash
# The test command: install what is missing, run every check, then the whole test suite.
# Extra arguments go to pytest (e.g. hack/test.sh -k daemon).
set -o errexit -o nounset -o pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"${root}/hack/install-deps.sh"
"${root}/hack/verify-all.sh"
cd "${root}"
# A fresh base dir per run: pytest never trips over what an earlier, killed run left behind.
basetemp="$(mktemp -d /tmp/berth-tests.XXXXXX)"
exec "${BERTH_VENV:-${root}/.venv}/bin/python" -m pytest -p no:cacheprovider \
  --basetemp="${basetemp}" "$@"

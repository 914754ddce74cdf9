#!/usr/bin/env bash
# Every check CI runs besides the tests. Never writes anything.
set -o errexit -o nounset -o pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
status=0
for check in verify-codegen verify-lint verify-typecheck verify-imports; do
  echo "== ${check}"
  if ! "${here}/${check}.sh"; then
    echo "FAILED: ${check}" >&2
    status=1
  fi
done
exit "${status}"

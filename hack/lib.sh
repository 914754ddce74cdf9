# Shared helpers for hack/ scripts: find the repository and its virtualenv.
BERTH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BERTH_VENV="${BERTH_VENV:-${BERTH_ROOT}/.venv}"
PY="${BERTH_VENV}/bin/python"
if [[ ! -x "${PY}" ]]; then
  echo "error: no virtualenv at ${BERTH_VENV}; run hack/install-deps.sh first" >&2
  exit 1
fi
export PATH="${BERTH_VENV}/bin:${PATH}"

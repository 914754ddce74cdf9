#!/usr/bin/env bash
# Runs INSIDE the VM, from the copied checkout: e2e/critest against berthd once per cgroup
# driver, results in the run directory. Started by the host with
#   sudo e2e/vm/run --exec 'e2e/vm/critest.sh [DRIVERS] [critest args...]'
# DRIVERS: "cgroupfs systemd" (default) or one of them; the rest goes to e2e/critest, e.g.
#   e2e/vm/critest.sh "cgroupfs systemd" --ginkgo.focus='stats|OOM|metrics'
# Per driver: /mnt/berth-run/critest-<driver>/ (critest's and berthd's logs) and
# /mnt/berth-run/critest-<driver>.json (the summary); exit status 1 if any driver's run failed.
set -o nounset -o pipefail
run=/mnt/berth-run
drivers="${1:-cgroupfs systemd}"
shift || true
# e2e/critest compiles two tiny helpers when its image cache misses (the host's cache is passed
# along by e2e/vm/run when it has one).
command -v gcc >/dev/null || apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null
status=0
for driver in ${drivers}; do
  started=${SECONDS}
  echo "== critest, cgroup driver ${driver}"
  mkdir -p "${run}/critest-${driver}"
  BERTH_TEST_CGROUP_DRIVER="${driver}" "${BERTH_VENV:-/opt/berth/venv}/bin/python" e2e/critest \
    --log-dir "${run}/critest-${driver}" --results "${run}/critest-${driver}.json" "$@" || status=1
  echo "== critest, cgroup driver ${driver}: $((SECONDS - started))s"
done
exit "${status}"

#!/usr/bin/env bash
# Runs INSIDE the VM (started by berth-vm.service through berth-vm-boot), as root.
# Reads /mnt/berth-run/job.env written by the host:
#   JOB=provision   copy the checkout and run hack/install-deps.sh (the README's install command)
#   JOB=test        copy the checkout and run hack/test.sh once per driver in DRIVERS,
#                   with BERTH_TEST_CGROUP_DRIVER set, pytest arguments from PYTEST_ARGS,
#                   BERTH_TEST_TIME_SCALE from TIME_SCALE (4 under emulation)
#   JOB=exec        run CMD in the copied checkout
# Writes to /mnt/berth-run: output.log (everything), facts, rc.<step> (exit codes),
# junit-<driver>.xml. The unit powers the VM off when this script returns.
set -o nounset -o pipefail

run=/mnt/berth-run
src=/opt/berth/src
export BERTH_VENV=/opt/berth/venv
export DEBIAN_FRONTEND=noninteractive
if compgen -G "/mnt/berth-wheels/*.whl" >/dev/null; then
  # PyPI through the host: pip installs from the wheels the host downloaded for this checkout.
  export PIP_NO_INDEX=1 PIP_FIND_LINKS=/mnt/berth-wheels
fi
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

say() { printf '[vm %(%H:%M:%S)T] %s\n' -1 "$*"; }

facts() {
  {
    echo "cgroupfs: $(stat -fc %T /sys/fs/cgroup)"
    echo "kernel: $(uname -r)"
    echo "controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
    echo "subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null)"
    echo "own_cgroup: $(cat /proc/self/cgroup)"
    echo "systemd: $(systemctl --version | head -1)"
    echo "cpus: $(nproc)"
    echo "memory_kib: $(awk '/MemTotal/ {print $2}' /proc/meminfo)"
    echo "cmdline: $(cat /proc/cmdline)"
    echo "uptime_s: $(cut -d' ' -f1 /proc/uptime)"
  } | tee "${run}/facts"
}

# A private copy of the checkout: the VM never writes into the host's tree (no .venv, egg-info or
# caches there), and an old copy's leftovers never leak into this run.
sync_checkout() {
  rm -rf "${src}"
  mkdir -p "${src}"
  tar -C /mnt/berth-src -cf - \
    --exclude=./.venv --exclude=./.git --exclude='__pycache__' --exclude=.mypy_cache \
    --exclude=.ruff_cache --exclude=.pytest_cache --exclude=.hypothesis . \
    | tar -C "${src}" -xf -
}

step() {
  local name="$1" rc=0 started=${SECONDS}
  shift
  say "step ${name}: $*"
  "$@" || rc=$?
  say "step ${name}: exit ${rc} after $((SECONDS - started))s"
  echo "${rc}" >"${run}/rc.${name}"
  return "${rc}"
}

run_tests() {
  local driver status=0
  for driver in ${DRIVERS}; do
    # shellcheck disable=SC2086  # PYTEST_ARGS is a word list by design
    BERTH_TEST_CGROUP_DRIVER="${driver}" BERTH_TEST_TIME_SCALE="${TIME_SCALE:-1}" \
      step "${driver}" "${src}/hack/test.sh" \
      --junitxml="${run}/junit-${driver}.xml" ${PYTEST_ARGS:-} || status=1
  done
  return "${status}"
}

# Tools the host passed along (critest, crictl: static binaries not in Debian).
install_tools() {
  local tool
  for tool in "${run}"/tools/*; do
    [[ -f "${tool}" ]] && install -m 0755 "${tool}" /usr/local/bin/
  done
  if [[ -d "${run}/tools/critest-cache" ]]; then
    mkdir -p /var/cache
    cp -a "${run}/tools/critest-cache" /var/cache/berth-critest
  fi
  return 0
}

main() {
  exec > >(tee -a "${run}/output.log") 2>&1
  # shellcheck source=/dev/null
  source "${run}/job.env"
  facts
  say "job ${JOB}"
  install_tools
  sync_checkout
  cd "${src}" || exit 1
  case "${JOB}" in
    provision) step provision "${src}/hack/install-deps.sh" ;;
    test) run_tests ;;
    exec) step exec bash -c "${CMD}" ;;
    *) say "unknown job ${JOB}"; echo 2 >"${run}/rc.job" ;;
  esac
  sync
  say "done"
}

# One command, so bash has read all of it before it runs: this file lives on the host's share
# and may be edited while a VM is using it.
main "$@"
exit

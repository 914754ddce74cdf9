# Cached layers on top of the base image, and the end-of-run report (sourced; host side).

# Wheels for the checkout's Python dependencies, downloaded on the host so the VM's pip needs
# no route to PyPI (this host reaches it through a TLS proxy the VM does not trust). Keyed on
# pyproject.toml; BERTH_VM_PYPI=1 leaves the directory empty so the VM's pip uses PyPI itself.
vm_wheels() {
  local dir="${VM_CACHE}/wheels" key
  key="$(vm_digest "${BERTH_ROOT}/pyproject.toml")"
  if [[ "${BERTH_VM_PYPI:-0}" == 1 ]]; then
    rm -rf "${dir}"
    mkdir -p "${dir}"
    return
  fi
  [[ -f "${dir}/key" && "$(cat "${dir}/key")" == "${key}" ]] && return
  vm_log "downloading wheels for ${BERTH_ROOT}[dev]"
  rm -rf "${dir}"
  mkdir -p "${dir}"
  /usr/bin/python3 -m pip download --quiet --disable-pip-version-check --dest "${dir}" \
    "${BERTH_ROOT}[dev]" pip setuptools wheel 2>"${VM_CACHE}/wheels.log" \
    || { tail "${VM_CACHE}/wheels.log" >&2; vm_die "pip download failed"; }
  echo "${key}" >"${dir}/key"
}

# provisioned.qcow2: the base image after one boot that ran hack/install-deps.sh (the README's
# install command) on a copy of the checkout. Test runs boot throwaway overlays of it, and run
# install-deps.sh again through hack/test.sh, which then finds everything in place.
# Keyed on the base image and the files that decide what gets installed.
vm_provision() {
  local image="${VM_CACHE}/provisioned.qcow2" key rundir started=${SECONDS}
  key="$(vm_digest "${VM_CACHE}/base/key" "${BERTH_ROOT}/hack/install-deps.sh" \
    "${BERTH_ROOT}/pyproject.toml")"
  [[ -f "${image}" && "$(cat "${VM_CACHE}/provisioned.key" 2>/dev/null)" == "${key}" ]] && return
  vm_log "provisioning: booting the base image to run hack/install-deps.sh"
  rundir="${VM_CACHE}/runs/provision-$(date +%Y%m%d-%H%M%S)"
  mkdir -p "${rundir}"
  rm -f "${image}" "${VM_CACHE}/provisioned.key"
  qemu-img create -q -f qcow2 -F raw -b "${VM_CACHE}/base/base.img" "${image}.new"
  echo "JOB=provision" >"${rundir}/job.env"
  vm_boot "${image}.new" "${rundir}" 1800 || true
  [[ "$(cat "${rundir}/rc.provision" 2>/dev/null)" == 0 ]] \
    || vm_die "provisioning failed; see ${rundir}/output.log and console.log"
  mv "${image}.new" "${image}"
  echo "${key}" >"${VM_CACHE}/provisioned.key"
  vm_log "provisioned in $((SECONDS - started))s"
}

# Summarise a test run from its result files; exit 0 all passed, 1 a run failed, 2 no result.
vm_report() {
  local rundir="$1" prepared="$2" boot="$3" status=0 rc f
  echo "== e2e/vm summary (${rundir})"
  cat "${rundir}/facts" 2>/dev/null | grep -E '^(cgroupfs|kernel|cpus|memory_kib|uptime_s):' \
    || echo "no facts: the VM never ran its job"
  echo "image build/provision check: ${prepared}s; boot + job + poweroff: ${boot}s"
  source "${rundir}/job.env"
  local steps="${DRIVERS:-}"
  [[ "${JOB}" == exec ]] && steps=exec
  for f in ${steps}; do
    rc="$(cat "${rundir}/rc.${f}" 2>/dev/null || echo missing)"
    echo "${f}: exit ${rc}"
    case "${rc}" in
      0) ;;
      missing) status=2 ;;
      *) ((status == 2)) || status=1 ;;
    esac
  done
  return "${status}"
}

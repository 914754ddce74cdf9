# Boot the VM once for one job (sourced by e2e/vm/run and provision.sh; host side).
#
# vm_boot DISK RUNDIR TIMEOUT_SECONDS
#   DISK     qcow2 image to boot (written to)
#   RUNDIR   host directory shared read-write as the `run` tag: job.env in, output and results
#            out; the serial console goes to RUNDIR/console.log
# Returns QEMU's exit status (124 on timeout). The job's own status is in RUNDIR/rc.* files.

# KVM only where the CPU offers hardware virtualisation to this host: a /dev/kvm backed by PVM
# (a paravirtual nested hypervisor, as on these CI machines) runs only PVM-built guest kernels and
# hangs Debian's kernel at its first mode switch, so there the VM falls back to QEMU's TCG.
# BERTH_VM_ACCEL=kvm|tcg forces one.
vm_accel() {
  local accel="${BERTH_VM_ACCEL:-auto}"
  if [[ "${accel}" == auto ]]; then
    accel=tcg
    if [[ -c /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
      accel=kvm
    fi
  fi
  echo "${accel}"
}

vm_qemu_args() {
  local disk="$1" rundir="$2" base="${VM_CACHE}/base"
  local cmdline=(
    root=/dev/vda rw console=ttyS0 panic=1
    # The point of this VM: one cgroup v2 hierarchy, no v1 controller anywhere.
    systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all
  )
  local share=local,security_model=none accel cpu=host
  accel="$(vm_accel)"
  [[ "${accel}" == tcg ]] && cpu=max
  QEMU_ARGS=(
    -machine "q35,accel=${accel}" -cpu "${cpu}" -smp "${VM_CPUS}" -m "${VM_MEMORY}"
    -nodefaults -display none -monitor none -no-reboot
    -kernel "${base}/vmlinuz" -initrd "${base}/initrd.img" -append "${cmdline[*]}"
    -drive "file=${disk},format=qcow2,if=virtio,cache=unsafe,discard=unmap"
    # User-mode networking: the VM reaches the outside only through QEMU's NAT on this host.
    -netdev user,id=nat0 -device virtio-net-pci,netdev=nat0
    -virtfs "${share},path=${VM_SRC:-${BERTH_ROOT}},mount_tag=src,readonly=on"
    -virtfs "${share},path=${rundir},mount_tag=run"
    -virtfs "${share},path=${VM_CACHE}/wheels,mount_tag=wheels,readonly=on"
    -serial "file:${rundir}/console.log"
    # ttyS1: a root shell, `socat -,raw,echo=0 UNIX-CONNECT:RUNDIR/shell.sock` while it runs.
    -chardev "socket,id=shell,path=${rundir}/shell.sock,server=on,wait=off" -serial chardev:shell
  )
}

vm_boot() {
  local disk="$1" rundir="$2" timeout="$3" qemu rc=0
  mkdir -p "${VM_CACHE}/wheels"
  : >"${rundir}/output.log"
  vm_qemu_args "${disk}" "${rundir}"
  vm_log "qemu: $(vm_accel), ${VM_CPUS} vCPUs, ${VM_MEMORY}"
  timeout --kill-after=15 "${timeout}" qemu-system-x86_64 "${QEMU_ARGS[@]}" \
    </dev/null >"${rundir}/qemu.log" 2>&1 &
  qemu=$!
  # timeout(1) runs in its own process group: stop it (and so QEMU) if we are stopped.
  trap 'kill "${qemu}" 2>/dev/null' EXIT
  # The job tees its output to the shared directory; follow it live until QEMU exits.
  tail -n +1 -F --pid="${qemu}" "${rundir}/output.log" 2>/dev/null &
  wait "${qemu}" || rc=$?
  sleep 0.5
  kill %2 2>/dev/null || true
  wait 2>/dev/null || true
  trap - EXIT
  if ((rc != 0)); then
    vm_log "qemu exited with ${rc}; last console lines:"
    tail -20 "${rundir}/console.log" >&2 || true
    cat "${rundir}/qemu.log" >&2 || true
  fi
  return "${rc}"
}

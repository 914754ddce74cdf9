#!/usr/bin/env bash
# Build the VM's base image once: a Debian root filesystem from debootstrap (systemd as init,
# Debian's kernel), packed into a raw ext4 image, plus the kernel and initrd to boot it with.
# Output (in BERTH_VM_CACHE/base): base.img, vmlinuz, initrd.img, key. Skipped when `key`
# matches the digest of this script and the guest files; --force rebuilds.
set -o errexit -o nounset -o pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# What the image has before berth's own install command runs in it: an init, the kernel, the
# network, and the python3 that hack/install-deps.sh builds its virtualenv with.
PACKAGES=(
  systemd systemd-sysv udev dbus kmod iproute2 procps
  linux-image-amd64 initramfs-tools ca-certificates
  python3 python3-venv
)

base="${VM_CACHE}/base"
key="$(vm_digest "${BASH_SOURCE[0]}" "${VM_DIR}/lib.sh" "${VM_DIR}/guest/berth-vm-boot" \
  "${VM_DIR}/guest/berth-vm.service")"

if [[ "${1:-}" != --force && -f "${base}/key" && "$(cat "${base}/key")" == "${key}" ]]; then
  vm_log "base image up to date (${base})"
  exit 0
fi
vm_need_root
vm_host_deps

work="${VM_CACHE}/build"
rootfs="${work}/rootfs"
cleanup() {
  umount -R "${rootfs}/proc" 2>/dev/null || true
  rm -rf "${work}"
}
trap cleanup EXIT
cleanup
mkdir -p "${rootfs}" "${VM_CACHE}/debs" "${base}"

mirror="$(vm_mirror)"
vm_log "debootstrap ${VM_SUITE} from ${mirror}"
started=${SECONDS}
debootstrap --variant=minbase --cache-dir="${VM_CACHE}/debs" \
  --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  "${VM_SUITE}" "${rootfs}" "${mirror}" >"${work}.debootstrap.log" 2>&1 \
  || { tail -30 "${work}.debootstrap.log" >&2; vm_die "debootstrap failed"; }
vm_log "debootstrap took $((SECONDS - started))s"

configure_rootfs() {
  local r="$1"
  echo berth-vm >"${r}/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 berth-vm\n::1 localhost ip6-localhost\n' >"${r}/etc/hosts"
  echo 'LABEL=berth-root / ext4 defaults 0 1' >"${r}/etc/fstab"
  # QEMU's user-mode network: DHCP on the one NIC, its built-in DNS forwarder.
  printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' >"${r}/etc/systemd/network/10-nat.network"
  echo 'nameserver 10.0.2.3' >"${r}/etc/resolv.conf"
  cat >"${r}/etc/apt/sources.list" <<EOF
deb ${mirror} ${VM_SUITE} main
deb ${mirror} ${VM_SUITE}-updates main
deb $(vm_security_mirror) ${VM_SUITE}-security main
EOF
  install -m 0755 "${VM_DIR}/guest/berth-vm-boot" "${r}/usr/local/sbin/berth-vm-boot"
  install -m 0644 "${VM_DIR}/guest/berth-vm.service" "${r}/etc/systemd/system/berth-vm.service"
  chroot "${r}" systemctl enable --quiet systemd-networkd berth-vm.service
  chroot "${r}" systemctl mask --quiet getty@tty1.service serial-getty@ttyS0.service
  # A root shell on the second serial port, for a look inside a running VM (see README).
  mkdir -p "${r}/etc/systemd/system/serial-getty@ttyS1.service.d"
  printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root -L 115200 %%I vt100\n' \
    >"${r}/etc/systemd/system/serial-getty@ttyS1.service.d/autologin.conf"
  chroot "${r}" systemctl enable --quiet serial-getty@ttyS1.service
  chroot "${r}" systemd-machine-id-setup >/dev/null
  chroot "${r}" apt-get clean
}

# The kernel package's postinst may run before initramfs-tools is configured; make sure an
# initrd exists (it carries the virtio block driver the root filesystem needs).
ensure_initrd() {
  local r="$1"
  if ! compgen -G "${r}/boot/initrd.img-*" >/dev/null; then
    mount -t proc proc "${r}/proc"
    chroot "${r}" update-initramfs -c -k all >/dev/null
    umount "${r}/proc"
  fi
  # The VM boots the copy of the initrd kept on the host; regenerating it inside (packages such
  # as busybox trigger that) only costs minutes under emulation.
  sed -i 's/^update_initramfs=.*/update_initramfs=no/' "${r}/etc/initramfs-tools/update-initramfs.conf"
}

configure_rootfs "${rootfs}"
ensure_initrd "${rootfs}"
cp "$(ls "${rootfs}"/boot/vmlinuz-* | sort -V | tail -1)" "${base}/vmlinuz.new"
cp "$(ls "${rootfs}"/boot/initrd.img-* | sort -V | tail -1)" "${base}/initrd.img.new"
rm -f "${base}/base.img.new"
mkfs.ext4 -q -F -L berth-root -d "${rootfs}" "${base}/base.img.new" "${VM_DISK_SIZE}"
for f in base.img vmlinuz initrd.img; do
  mv "${base}/${f}.new" "${base}/${f}"
done
echo "${key}" >"${base}/key"
# Images built on the old base are stale now.
rm -f "${VM_CACHE}/provisioned.qcow2" "${VM_CACHE}/provisioned.key"
vm_log "base image built in $((SECONDS - started))s: ${base}"

# Shared settings and helpers for e2e/vm (sourced, never run). Host side only.
# Everything the VM needs on the host lives under BERTH_VM_CACHE; nothing is written to the
# checkout.

BERTH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VM_DIR="${BERTH_ROOT}/e2e/vm"
VM_CACHE="${BERTH_VM_CACHE:-/var/cache/berth-vm}"
VM_SUITE="${BERTH_VM_SUITE:-bookworm}"
VM_CPUS="${BERTH_VM_CPUS:-2}"        # the brief's ceiling: 2 vCPUs
VM_MEMORY="${BERTH_VM_MEMORY:-6G}"   # 4-8 GiB
VM_DISK_SIZE="${BERTH_VM_DISK_SIZE:-16G}"

vm_log() { printf '[e2e/vm %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
vm_die() { vm_log "error: $*"; exit 2; }

# The Debian mirror apt already uses on this host (deb822 .sources or one-line .list), so
# debootstrap and the VM's apt reach the archive the same way the host does.
vm_mirror() {
  if [[ -n "${BERTH_VM_MIRROR:-}" ]]; then
    echo "${BERTH_VM_MIRROR}"
    return
  fi
  local url
  url="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ {u=$2} /^Suites:/ && $0 ~ /[[:space:]]'"${VM_SUITE}"'([[:space:]]|$)/ {print u; exit}')"
  if [[ -z "${url}" ]]; then
    url="$(grep -hE '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$3 == "'"${VM_SUITE}"'" {print $2; exit}')"
  fi
  echo "${url:-http://deb.debian.org/debian}"
}

# Security suite URL: the mirror of the '-security' suite if the host has one.
vm_security_mirror() {
  local url
  url="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^URIs:/ {u=$2} /^Suites:/ && /'"${VM_SUITE}"'-security/ {print u; exit}')"
  echo "${url:-http://deb.debian.org/debian-security}"
}

# A short digest of files: a cached artefact is rebuilt when the inputs it was built from change.
vm_digest() { cat "$@" | sha256sum | cut -c1-16; }

vm_need_root() { [[ "$(id -u)" == 0 ]] || vm_die "run as root (debootstrap, /dev/kvm)"; }

# Install the host tools with apt when they are missing.
vm_host_deps() {
  local pkgs=(qemu-system-x86 qemu-utils debootstrap e2fsprogs python3-pip) missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q "install ok installed" || missing+=("${p}")
  done
  if ((${#missing[@]})); then
    vm_log "installing host packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  [[ -c /dev/kvm ]] || vm_die "/dev/kvm is missing: the VM needs KVM"
}

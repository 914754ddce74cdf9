#!/usr/bin/env bash
# Install everything berth needs on a Debian 12 machine, as root, without internet beyond
# Debian's archive and PyPI: the OCI runtimes, CNI plugins, the local registry and busybox the
# tests build images from, and a virtualenv with berth and its Python dependencies.
#   BERTH_VENV=/path   where the virtualenv goes (default: <repo>/.venv)
#   BERTH_DEV=0        skip the test/lint tools (default 1: install them)
set -o errexit -o nounset -o pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BERTH_VENV:-${root}/.venv}"
dev="${BERTH_DEV:-1}"

packages=(
  python3 python3-venv python3-pip
  runc crun catatonit
  containernetworking-plugins iptables nftables iproute2
  util-linux procps kmod openssl iputils-ping
  docker-registry busybox-static
)
if [[ "${dev}" == 1 ]]; then
  packages+=(containerd)  # only for side-by-side benchmarks and critest comparisons
fi

if [[ "$(id -u)" != 0 ]]; then
  echo "install-deps: run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q "install ok installed" || missing+=("${p}")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# containerd's package enables its own service where systemd runs; berth never needs it.
if [[ " ${missing[*]:-} " == *" containerd "* ]] && command -v systemctl >/dev/null \
   && [[ -d /run/systemd/system ]]; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi

# systemd-udev gives every new veth a "persistent" MAC address of its own choosing, racing the CNI
# plugin that set one (the bridge plugin's CHECK then fails, and the bridge may learn the wrong
# address). Keep the address the plugin chose, as CNI-based nodes do.
link=/etc/systemd/network/80-berth-cni-veth.link
if [[ -d /run/systemd/system && -e /usr/lib/systemd/network/99-default.link && ! -e "${link}" ]]; then
  mkdir -p "$(dirname "${link}")"
  printf '%s\n' "# Written by berth's hack/install-deps.sh: leave CNI veths' MAC addresses alone." \
    "[Match]" "OriginalName=veth*" "Driver=veth" "" "[Link]" "MACAddressPolicy=none" >"${link}"
  udevadm control --reload 2>/dev/null || true
fi

if [[ ! -x "${venv}/bin/python" ]]; then
  /usr/bin/python3 -m venv "${venv}"
fi
extra=""
[[ "${dev}" == 1 ]] && extra="[dev]"
"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check -e "${root}${extra}"

for cmd in berthd berthctl berth-shim; do
  ln -sf "${venv}/bin/${cmd}" "/usr/local/bin/${cmd}"
done
echo "install-deps: done (virtualenv ${venv})"

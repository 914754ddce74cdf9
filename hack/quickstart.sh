#!/usr/bin/env bash
# The quick start: install berth and what it needs, start berthd, run a first pod.
# Idempotent: a running berthd is left as it is; existing config files are never replaced.
#   hack/quickstart.sh         install, start, run the demo pod (removed again)
#   hack/quickstart.sh stop    stop the berthd this script started
set -o errexit -o nounset -o pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BERTH_VENV:-${root}/.venv}"
config=/etc/berth/config.toml
socket=/run/berth/berth.sock
pidfile=/run/berth-quickstart.pid
log=/var/log/berthd.log

systemd_runs() { [[ -d /run/systemd/system ]]; }

if [[ "${1:-}" == stop ]]; then
  if systemd_runs && systemctl is-active --quiet berthd 2>/dev/null; then
    systemctl stop berthd
  elif [[ -f "${pidfile}" ]]; then
    kill -TERM "$(cat "${pidfile}")" 2>/dev/null || true
    rm -f "${pidfile}"
  fi
  echo "berthd stopped (pods and containers keep running until removed)"
  exit 0
fi

BERTH_DEV="${BERTH_DEV:-0}" "${root}/hack/install-deps.sh"

if [[ ! -f "${config}" ]]; then
  mkdir -p "$(dirname "${config}")"
  # Where processes may not leave their own cgroup (a container or a managed VM), every
  # cgroup berth creates must go below berthd's own: cgroup_root = "self".
  cgroup_root="/"
  if grep -qvE '^[0-9]+:[^:]*:/$' /proc/self/cgroup; then cgroup_root="self"; fi
  cat > "${config}" <<TOML
# berthd configuration; every key and its default is listed in berth's README.
cgroup_root = "${cgroup_root}"
TOML
  echo "quickstart: wrote ${config} (cgroup_root = \"${cgroup_root}\")"
fi

"${venv}/bin/python" - <<'PY'
from pathlib import Path
from cri.cni.default import install_default
print(f"quickstart: CNI config {install_default(Path('/etc/cni/net.d'))}")
PY

if ! berthctl -r "${socket}" version >/dev/null 2>&1; then
  if systemd_runs; then
    cat > /etc/systemd/system/berthd.service <<UNIT
[Unit]
Description=berth CRI runtime
After=network.target

[Service]
ExecStart=${venv}/bin/berthd --config ${config}
KillMode=process
Delegate=yes
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable --now berthd
  else
    setsid "${venv}/bin/berthd" --config "${config}" >>"${log}" 2>&1 < /dev/null &
    echo $! > "${pidfile}"
    echo "quickstart: berthd started (pid $(cat "${pidfile}"), log ${log})"
  fi
  for _ in $(seq 100); do
    berthctl -r "${socket}" version >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

berthctl -r "${socket}" version
berthctl -r "${socket}" demo
echo
echo "berthd is serving on unix://${socket}; try: crictl --runtime-endpoint unix://${socket} info"

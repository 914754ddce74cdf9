"""berthd as a user meets it: start, answer, refuse bad set-ups, stop, survive SIGKILL."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from cri.api.v1 import api_pb2
from cri.daemon import SYSTEMD_RUNTIME_DIR
from tests.support import cgroup_view as cg
from tests.support.berthd import BERTHD, Berthd, write_config

TEST_CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "berth-test",
    "plugins": [{"type": "loopback"}],
}


def run_berthd_expecting_failure(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BERTHD, "--config", str(config)], capture_output=True, text=True, timeout=30
    )


def conditions(daemon: Berthd) -> dict[str, api_pb2.RuntimeCondition]:
    resp = daemon.client.runtime.Status(api_pb2.StatusRequest())
    return {c.type: c for c in resp.status.conditions}


def test_version_answers_what_the_kubelet_requires(berthd: Berthd) -> None:
    v = berthd.client.runtime.Version(api_pb2.VersionRequest())
    assert (v.version, v.runtime_name, v.runtime_api_version) == ("0.1.0", "berth", "v1")
    assert v.runtime_version


def test_socket_is_0660(berthd: Berthd) -> None:
    mode = stat.S_IMODE(os.stat(berthd.socket).st_mode)
    assert mode == 0o660


def test_network_ready_follows_the_cni_dir_without_restart(berthd: Berthd) -> None:
    before = conditions(berthd)
    assert before["RuntimeReady"].status
    assert not before["NetworkReady"].status
    assert before["NetworkReady"].reason and before["NetworkReady"].message
    conf_dir = Path(berthd.settings["cni"]["conf_dir"])
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "10-test.conflist").write_text(json.dumps(TEST_CONFLIST))
    after = conditions(berthd)
    assert after["NetworkReady"].status, after["NetworkReady"].message
    (conf_dir / "10-test.conflist").unlink()
    assert not conditions(berthd)["NetworkReady"].status


def test_verbose_status_carries_the_effective_config(berthd: Berthd) -> None:
    resp = berthd.client.runtime.Status(api_pb2.StatusRequest(verbose=True))
    cfg = json.loads(resp.info["config"])
    assert cfg["root"] == str(berthd.root)
    assert cfg["stateDir"] == str(berthd.state)
    names = [h.name for h in resp.runtime_handlers]
    assert names[0] == "" and "runc" in names


def test_runtime_config_reports_the_cgroup_driver(berthd: Berthd) -> None:
    resp = berthd.client.runtime.RuntimeConfig(api_pb2.RuntimeConfigRequest())
    expected = api_pb2.SYSTEMD if cg.SYSTEMD else api_pb2.CGROUPFS  # BERTH_TEST_CGROUP_DRIVER
    assert resp.linux.cgroup_driver == expected


def test_update_runtime_config_records_the_pod_cidr(berthd: Berthd) -> None:
    def update(cidr: str) -> None:
        config = api_pb2.RuntimeConfig(network_config=api_pb2.NetworkConfig(pod_cidr=cidr))
        berthd.client.runtime.UpdateRuntimeConfig(
            api_pb2.UpdateRuntimeConfigRequest(runtime_config=config)
        )

    update("10.244.3.0/24,fd00:10:244:3::/64")
    info = berthd.client.runtime.Status(api_pb2.StatusRequest(verbose=True)).info
    assert json.loads(info["config"])["podCIDR"] == "10.244.3.0/24,fd00:10:244:3::/64"
    with pytest.raises(grpc.RpcError) as bad:
        update("10.244.3.0/99")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_metrics_endpoint_counts_requests(berthd: Berthd) -> None:
    import urllib.request

    berthd.client.runtime.Version(api_pb2.VersionRequest())
    events = [json.loads(line) for line in berthd.logs().splitlines() if line.startswith("{")]
    address = next(e["address"] for e in events if e["event"] == "metrics serving")
    body = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    assert 'berth_cri_request_duration_seconds_count{code="OK",method="Version"}' in body


def test_second_berthd_on_the_same_socket_is_refused(berthd: Berthd, tmp_path: Path) -> None:
    other = write_config(tmp_path / "c.toml", {**berthd.settings, "root": str(tmp_path / "r")})
    result = run_berthd_expecting_failure(other)
    assert result.returncode == 2
    assert "another berthd is already serving" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    berthd.client.runtime.Version(api_pb2.VersionRequest())  # the first one is unharmed


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bogus_key": 1}, "bogus_key: unknown key"),
        ({"log_level": 7}, "log_level: expected str"),
        ({"cgroup_driver": "nope"}, "cgroup_driver"),
        pytest.param(
            {"cgroup_driver": "systemd"},
            "systemd does not run this host",
            marks=pytest.mark.skipif(
                SYSTEMD_RUNTIME_DIR.is_dir(), reason="systemd runs this host: it is not refused"
            ),
        ),
    ],
)
def test_bad_config_stops_before_creating_anything(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    daemon = Berthd(tmp_path, settings)
    path = write_config(tmp_path / "config.toml", daemon.settings)
    result = run_berthd_expecting_failure(path)
    assert result.returncode == 2
    assert message in result.stderr
    assert not daemon.root.exists() and not daemon.state.exists()


def test_socket_in_a_missing_directory(tmp_path: Path) -> None:
    daemon = Berthd(tmp_path, {"socket": str(tmp_path / "missing" / "b.sock")})
    result = run_berthd_expecting_failure(write_config(tmp_path / "c.toml", daemon.settings))
    assert result.returncode == 2
    assert "directory" in result.stderr and "does not exist" in result.stderr
    assert not daemon.root.exists() and not daemon.state.exists()


@pytest.mark.root
def test_socket_in_an_unwritable_directory(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    try:
        daemon = Berthd(tmp_path, {"socket": str(ro / "b.sock")})
        result = run_berthd_expecting_failure(write_config(tmp_path / "c.toml", daemon.settings))
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert result.returncode == 2
    assert "is not writable" in result.stderr
    assert not daemon.root.exists() and not daemon.state.exists()


def test_sigterm_removes_the_socket(berthd_dir: Path) -> None:
    daemon = Berthd(berthd_dir)
    daemon.start()
    assert daemon.stop() == 0
    assert not daemon.socket.exists()


def test_restart_after_sigkill_needs_no_cleanup(berthd_dir: Path) -> None:
    daemon = Berthd(berthd_dir)
    daemon.start()
    daemon.kill()
    assert daemon.socket.exists()  # the crash left it behind
    daemon.start()
    try:
        assert daemon.client.runtime.Version(api_pb2.VersionRequest()).runtime_name == "berth"
    finally:
        assert daemon.stop() == 0


def test_berthctl_version_and_info(berthd: Berthd) -> None:
    ctl = [sys.executable, "-c", "from cri.ctl.main import main; main()", "-r", str(berthd.socket)]
    version = subprocess.run([*ctl, "version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0, version.stderr
    assert "RuntimeName:  berth" in version.stdout
    info = subprocess.run([*ctl, "info"], capture_output=True, text=True, timeout=30)
    assert info.returncode == 0, info.stderr
    parsed = json.loads(info.stdout)
    assert parsed["config"]["socket"] == str(berthd.socket)
    assert {c["type"] for c in parsed["status"]["conditions"]} == {"RuntimeReady", "NetworkReady"}

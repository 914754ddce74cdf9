from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cri import errors
from cri.cni.invoke import CniPluginError
from cri.cni.manager import NOT_READY_REASON, CniManager
from cri.cni.pod import PodNetwork, PortMapping
from tests.unit.cri.cni_fakes import FakePlugins, prints, result_json

V4 = result_json("10.1.0.5/24")
DUAL = result_json("fd00::5/64", "10.1.0.5/24")


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "net.d"
        self.conf.mkdir()
        self.cache = root / "cache"
        self.netns = root / "netns"
        self.netns.touch()
        self.fakes = FakePlugins(root)

    def manager(self, timeout: float = 10.0) -> CniManager:
        return CniManager(self.conf, [self.fakes.bin], self.cache, timeout)

    def conflist(
        self, name: str = "net1", plugins: Sequence[dict[str, Any]] = (), **extra: Any
    ) -> Path:
        body = {"cniVersion": "1.0.0", "name": name, "plugins": list(plugins), **extra}
        path = self.conf / f"10-{name}.conflist"
        path.write_text(json.dumps(body))
        return path

    def pod(self, **overrides: Any) -> PodNetwork:
        fields: dict[str, Any] = {
            "id": "sandbox1",
            "name": "web",
            "namespace": "default",
            "uid": "uid-1",
            "netns": self.netns,
        }
        return PodNetwork(**(fields | overrides))

    def chain(self) -> None:
        """bridge (answers ADD with a result) → portmap (prints nothing)."""
        self.fakes.install("bridge", ADD=prints(V4))
        self.fakes.install("portmap")
        self.conflist(
            plugins=[
                {"type": "bridge", "bridge": "b0"},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ]
        )

    def steps(self) -> list[tuple[str, str]]:
        return [(c.plugin, c.command) for c in self.fakes.calls()]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_status_follows_config_changes_without_restart(env: Env) -> None:
    manager = env.manager()
    ready, reason, message = manager.status()
    assert not ready and reason == NOT_READY_REASON and str(env.conf) in message
    path = env.conflist(plugins=[{"type": "bridge"}])
    ready, _, message = manager.status()
    assert not ready and "['bridge'] not found" in message  # binary not installed yet
    env.fakes.install("bridge")
    assert manager.status().ready
    path.write_text("{ broken")
    assert not manager.status().ready
    path.write_text(json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "bridge"}))
    assert "no plugins" in manager.status().message  # a .conflist must hold a list
    path = path.rename(path.with_suffix(".conf"))  # same inode and mtime, new name
    assert manager.status().ready
    path.unlink()
    assert not manager.status().ready


async def test_add_runs_chain_in_order_with_prev_result_and_capabilities(env: Env) -> None:
    env.chain()
    pod = env.pod(
        port_mappings=(
            PortMapping(protocol="TCP", container_port=80, host_port=8080),
            PortMapping(protocol="UDP", container_port=53, host_port=0),
        )
    )
    result = await env.manager().add(pod)
    assert result.ips == ("10.1.0.5",)
    assert env.steps() == [("bridge", "ADD"), ("portmap", "ADD")]
    bridge, portmap = env.fakes.calls()
    assert "prevResult" not in bridge.stdin and "runtimeConfig" not in bridge.stdin
    assert portmap.stdin["prevResult"] == json.loads(V4)
    assert portmap.stdin["runtimeConfig"] == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    }
    assert bridge.env["CNI_ARGS"] == (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
        "K8S_POD_INFRA_CONTAINER_ID=sandbox1;K8S_POD_UID=uid-1"
    )
    assert bridge.env["CNI_NETNS"] == str(env.netns)


async def test_second_add_without_delete_is_refused(env: Env) -> None:
    env.chain()
    manager = env.manager()
    await manager.add(env.pod())
    env.fakes.forget()
    with pytest.raises(errors.AlreadyExists, match="sandbox1"):
        await manager.add(env.pod())
    assert env.steps() == []


async def test_add_reports_ipv4_first_for_dual_stack(env: Env) -> None:
    env.fakes.install("bridge", ADD=prints(DUAL))
    env.conflist(plugins=[{"type": "bridge"}])
    result = await env.manager().add(env.pod())
    assert result.ips == ("10.1.0.5", "fd00::5")


async def test_delete_uses_cached_config_and_result_in_reverse(env: Env) -> None:
    env.chain()
    pod = env.pod(port_mappings=(PortMapping(container_port=80, host_port=8080),))
    await env.manager().add(pod)
    # The config changes and berthd restarts before the pod is stopped.
    for path in env.conf.iterdir():
        path.unlink()
    env.fakes.install("other")
    env.conflist(name="net2", plugins=[{"type": "other"}])
    env.fakes.forget()
    manager = env.manager()
    await manager.delete(pod)
    assert env.steps() == [("portmap", "DEL"), ("bridge", "DEL")]
    for call in env.fakes.calls():
        assert call.stdin["name"] == "net1"
        assert call.stdin["prevResult"] == json.loads(V4)
    assert manager.cached_ids() == []


async def test_delete_cached_rebuilds_the_pod_from_the_cache(env: Env) -> None:
    env.chain()
    pod = env.pod(port_mappings=(PortMapping(container_port=80, host_port=8080),))
    await env.manager().add(pod)
    env.fakes.forget()
    restarted = env.manager()
    await restarted.delete_cached("sandbox1")
    assert env.steps() == [("portmap", "DEL"), ("bridge", "DEL")]
    for call in env.fakes.calls():
        assert call.env["CNI_ARGS"] == env.fakes.calls()[0].env["CNI_ARGS"]
        assert "K8S_POD_UID=uid-1" in call.env["CNI_ARGS"]
        assert call.env["CNI_NETNS"] == str(env.netns)
        assert call.stdin["prevResult"] == json.loads(V4)
    assert restarted.cached_ids() == []
    env.fakes.forget()
    await restarted.delete_cached("sandbox1")  # nothing cached: nothing runs
    assert env.steps() == []


async def test_delete_is_idempotent_and_uncached_delete_never_fails(env: Env) -> None:
    env.chain()
    manager = env.manager()
    await manager.add(env.pod())
    await manager.delete(env.pod())
    env.fakes.forget()
    env.fakes.behave("bridge", "DEL", prints('{"code":7,"msg":"gone"}', status=1))
    await manager.delete(env.pod())  # no cache: the current config, best effort
    steps = env.steps()
    assert steps == [("portmap", "DEL"), ("bridge", "DEL")]
    assert all("prevResult" not in c.stdin for c in env.fakes.calls())


async def test_delete_without_config_or_cache_is_a_no_op(env: Env) -> None:
    await env.manager().delete(env.pod())
    assert env.steps() == []


async def test_delete_with_netns_gone_passes_empty_netns(env: Env) -> None:
    env.chain()
    manager = env.manager()
    pod = env.pod(port_mappings=(PortMapping(container_port=80, host_port=8080),))
    await manager.add(pod)
    env.netns.unlink()
    env.fakes.forget()
    await manager.delete(pod)
    assert [c.env["CNI_NETNS"] for c in env.fakes.calls()] == ["", ""]


async def test_delete_error_with_cache_is_raised_and_cache_kept_for_retry(env: Env) -> None:
    env.chain()
    manager = env.manager()
    pod = env.pod(port_mappings=(PortMapping(container_port=80, host_port=8080),))
    await manager.add(pod)
    env.fakes.behave("portmap", "DEL", prints('{"code":5,"msg":"iptables busy"}', status=1))
    env.fakes.forget()
    with pytest.raises(errors.Unavailable, match="iptables busy"):
        await manager.delete(pod)
    assert env.steps() == [("portmap", "DEL"), ("bridge", "DEL")]  # bridge still ran
    assert manager.cached_ids() == ["sandbox1"]
    os.unlink(env.fakes.log / "portmap.DEL.sh")
    await manager.delete(pod)
    assert manager.cached_ids() == []


async def test_failed_add_deletes_the_whole_chain_before_raising(env: Env) -> None:
    env.fakes.install("bridge", ADD=prints(V4))
    env.fakes.install("failer", ADD=prints('{"code":999,"msg":"boom"}', status=1))
    env.fakes.install("portmap")
    env.conflist(
        plugins=[
            {"type": "bridge"},
            {"type": "failer"},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ]
    )
    manager = env.manager()
    pod = env.pod(port_mappings=(PortMapping(container_port=80, host_port=8080),))
    with pytest.raises(CniPluginError, match=r"cni plugin failer ADD for pod sandbox1.*boom"):
        await manager.add(pod)
    assert env.steps() == [
        ("bridge", "ADD"),
        ("failer", "ADD"),
        ("portmap", "DEL"),
        ("failer", "DEL"),
        ("bridge", "DEL"),
    ]
    assert env.fakes.calls()[-1].stdin["prevResult"] == json.loads(V4)
    assert manager.cached_ids() == []


async def test_failed_rollback_keeps_partial_result_for_a_later_delete(env: Env) -> None:
    env.fakes.install("bridge", ADD=prints(V4), DEL="exit 1\n")
    env.fakes.install("failer", ADD="exit 1\n")
    env.conflist(plugins=[{"type": "bridge"}, {"type": "failer"}])
    manager = env.manager()
    with pytest.raises(CniPluginError, match="failer ADD"):
        await manager.add(env.pod())
    assert manager.cached_ids() == ["sandbox1"]
    os.unlink(env.fakes.log / "bridge.DEL.sh")
    env.fakes.forget()
    await manager.delete(env.pod())
    assert env.steps() == [("failer", "DEL"), ("bridge", "DEL")]
    assert env.fakes.calls()[-1].stdin["prevResult"] == json.loads(V4)


async def test_add_timeout_is_deadline_exceeded_and_rolled_back(env: Env) -> None:
    env.fakes.install("bridge", ADD=prints(V4))
    env.fakes.install("slow", ADD="exec sleep 30\n")
    env.conflist(plugins=[{"type": "bridge"}, {"type": "slow"}])
    manager = env.manager(timeout=0.3)
    with pytest.raises(errors.DeadlineExceeded, match="slow ADD"):
        await manager.add(env.pod())
    assert env.steps()[-2:] == [("slow", "DEL"), ("bridge", "DEL")]
    assert manager.cached_ids() == []


async def test_add_without_result_is_rolled_back(env: Env) -> None:
    env.fakes.install("quiet")
    env.conflist(plugins=[{"type": "quiet"}])
    with pytest.raises(errors.Unavailable, match="returned no result"):
        await env.manager().add(env.pod())
    assert env.steps() == [("quiet", "ADD"), ("quiet", "DEL")]


async def test_add_refuses_missing_netns_and_missing_config(env: Env) -> None:
    manager = env.manager()
    with pytest.raises(errors.Unavailable, match="no valid network config"):
        await manager.add(env.pod())
    env.chain()
    with pytest.raises(errors.FailedPrecondition, match="sandbox1"):
        await manager.add(env.pod(netns=env.root / "absent"))
    assert env.steps() == []


async def test_portmap_without_mappings_is_skipped_on_delete(env: Env) -> None:
    env.chain()
    manager = env.manager()
    await manager.add(env.pod())  # no host ports
    env.fakes.forget()
    await manager.delete(env.pod())
    assert env.steps() == [("bridge", "DEL")]


async def test_old_spec_version_gets_no_prev_result_on_delete(env: Env) -> None:
    env.fakes.install("bridge", ADD=prints(result_json("10.1.0.5/24", version="0.3.1")))
    env.conflist(plugins=[{"type": "bridge"}], cniVersion="0.3.1")
    manager = env.manager()
    await manager.add(env.pod())
    await manager.check(env.pod())  # CHECK came with 0.4.0: nothing runs
    env.fakes.forget()
    await manager.delete(env.pod())
    [call] = env.fakes.calls()
    assert call.command == "DEL" and "prevResult" not in call.stdin


async def test_check_passes_cached_result_and_honours_disable_check(env: Env) -> None:
    env.chain()
    manager = env.manager()
    with pytest.raises(errors.FailedPrecondition):
        await manager.check(env.pod())
    await manager.add(env.pod())
    env.fakes.forget()
    await manager.check(env.pod())
    assert env.steps() == [("bridge", "CHECK"), ("portmap", "CHECK")]
    assert all(c.stdin["prevResult"] == json.loads(V4) for c in env.fakes.calls())
    env.fakes.behave("portmap", "CHECK", prints('{"code":999,"msg":"chain missing"}', 1))
    with pytest.raises(errors.Unavailable, match="chain missing"):
        await manager.check(env.pod())

    env.fakes.install("solo", ADD=prints(V4))
    for path in env.conf.iterdir():
        path.unlink()
    env.conflist(name="n2", plugins=[{"type": "solo"}], disableCheck=True)
    await manager.add(env.pod(id="sandbox2"))
    env.fakes.forget()
    await manager.check(env.pod(id="sandbox2"))
    assert env.steps() == []


async def test_plugin_status_only_for_spec_1_1(env: Env) -> None:
    env.chain()
    manager = env.manager()
    assert (await manager.plugin_status()).ready
    assert env.steps() == []  # 1.0.0 has no STATUS verb
    env.conflist(plugins=[{"type": "bridge"}, {"type": "portmap"}], cniVersion="1.1.0")
    assert (await manager.plugin_status()).ready
    assert env.steps() == [("bridge", "STATUS"), ("portmap", "STATUS")]
    env.fakes.behave("portmap", "STATUS", prints('{"code":50,"msg":"not yet"}', 1))
    ready, reason, message = await manager.plugin_status()
    assert not ready and reason == NOT_READY_REASON and "not yet" in message


async def test_cached_result_survives_restart(env: Env) -> None:
    env.chain()
    await env.manager().add(env.pod())
    cached = env.manager().cached_result("sandbox1")
    assert cached is not None and cached.ips == ("10.1.0.5",)
    assert env.manager().cached_result("other") is None


async def test_bad_bandwidth_annotation_is_invalid_argument(env: Env) -> None:
    env.chain()
    pod = env.pod(annotations={"kubernetes.io/ingress-bandwidth": "lots"})
    with pytest.raises(errors.InvalidArgument, match="ingress-bandwidth"):
        await env.manager().add(pod)
    assert env.steps() == []


def test_cache_files_cut_short_by_a_crash_are_removed(tmp_path: Path) -> None:
    from cri.cni.cache import ResultCache

    cache = ResultCache(tmp_path)
    (tmp_path / ".abc.json.x1y2").write_text("{")
    (tmp_path / "abc.json").write_text("{}")
    assert cache.remove_partial_writes() == [".abc.json.x1y2"]
    assert [p.name for p in tmp_path.iterdir()] == ["abc.json"]

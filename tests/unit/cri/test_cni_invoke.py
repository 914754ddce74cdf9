from __future__ import annotations

import asyncio
import os
import select
from pathlib import Path

import pytest

from cri import errors
from cri.cni.config import NetworkConfList, PluginConf
from cri.cni.invoke import CniPluginError, PluginCall, SubprocessExecutor, plugin_config
from tests.unit.cri.cni_fakes import FakePlugins, prints, result_json


def _call(command: str = "ADD", plugin: str = "fake") -> PluginCall:
    return PluginCall(
        command=command,
        network="net1",
        plugin=plugin,
        config={"cniVersion": "1.0.0", "name": "net1", "type": plugin},
        container_id="c0ffee",
        netns="/run/netns/x",
        ifname="eth0",
        cni_args="IgnoreUnknown=1;K8S_POD_NAME=p",
    )


@pytest.fixture
def fakes(tmp_path: Path) -> FakePlugins:
    return FakePlugins(tmp_path)


def _executor(fakes: FakePlugins, timeout: float = 10.0) -> SubprocessExecutor:
    return SubprocessExecutor([fakes.bin.parent / "nowhere", fakes.bin], timeout)


async def test_environment_and_stdin_reach_the_plugin(
    fakes: FakePlugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNI_STRAY", "from-our-environment")
    fakes.install("fake", ADD=prints(result_json("10.0.0.2/24")))
    out = await _executor(fakes)(_call())
    assert out is not None and out["ips"][0]["address"] == "10.0.0.2/24"
    [call] = fakes.calls()
    assert call.env["CNI_COMMAND"] == "ADD"
    assert call.env["CNI_CONTAINERID"] == "c0ffee"
    assert call.env["CNI_NETNS"] == "/run/netns/x"
    assert call.env["CNI_IFNAME"] == "eth0"
    assert call.env["CNI_ARGS"] == "IgnoreUnknown=1;K8S_POD_NAME=p"
    assert call.env["CNI_PATH"] == f"{fakes.bin.parent / 'nowhere'}:{fakes.bin}"
    assert "CNI_STRAY" not in call.env
    assert call.env["PATH"] == os.environ["PATH"]
    assert call.stdin == {"cniVersion": "1.0.0", "name": "net1", "type": "fake"}


async def test_status_gets_no_container_parameters(fakes: FakePlugins) -> None:
    fakes.install("fake")
    assert await _executor(fakes)(_call("STATUS")) is None
    [call] = fakes.calls()
    assert call.env["CNI_COMMAND"] == "STATUS"
    assert "CNI_CONTAINERID" not in call.env and "CNI_NETNS" not in call.env


async def test_error_object_becomes_unavailable_naming_plugin_and_step(
    fakes: FakePlugins,
) -> None:
    error = '{"cniVersion":"1.0.0","code":11,"msg":"no addresses left","details":"pool empty"}'
    fakes.install("fake", ADD=prints(error, status=1))
    with pytest.raises(CniPluginError) as caught:
        await _executor(fakes)(_call())
    assert isinstance(caught.value, errors.Unavailable)
    assert caught.value.code == 11
    message = str(caught.value)
    assert "cni plugin fake ADD for pod c0ffee" in message
    assert "no addresses left" in message and "pool empty" in message


async def test_failure_without_error_object_reports_stderr(fakes: FakePlugins) -> None:
    fakes.install("fake", DEL="echo 'iptables: locked' >&2\nexit 3\n")
    with pytest.raises(CniPluginError, match=r"exit status 3\): iptables: locked") as caught:
        await _executor(fakes)(_call("DEL"))
    assert caught.value.code is None


async def test_missing_binary(fakes: FakePlugins) -> None:
    with pytest.raises(CniPluginError, match="'absent' not found"):
        await _executor(fakes)(_call(plugin="absent"))


async def test_invalid_json_output(fakes: FakePlugins) -> None:
    fakes.install("fake", ADD=prints("not json"))
    with pytest.raises(CniPluginError, match="invalid JSON"):
        await _executor(fakes)(_call())


async def test_timeout_kills_plugin_and_its_children(fakes: FakePlugins) -> None:
    fifo = fakes.log / "child.fifo"
    os.mkfifo(fifo)
    # The plugin starts a child (as bridge starts host-local), reports its pid, then hangs.
    fakes.install("fake", ADD=f"sleep 60 &\necho $! > '{fifo}'\nwait\n")
    task = asyncio.create_task(_executor(fakes, timeout=0.5)(_call()))
    child = int(await asyncio.to_thread(fifo.read_text))
    pidfd = os.pidfd_open(child)
    try:
        with pytest.raises(errors.DeadlineExceeded, match=r"did not finish in 0\.5s"):
            async with asyncio.timeout(5.0):
                await task
        readable, _, _ = select.select([pidfd], [], [], 5.0)
        assert readable, "the plugin's child survived the timeout"
    finally:
        os.close(pidfd)


def test_plugin_config_injects_only_declared_capabilities() -> None:
    network = NetworkConfList(name="n", cni_version="1.0.0", plugins=())
    plugin = PluginConf(
        type="portmap",
        raw={"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
    )
    cap = {"portMappings": [{"hostPort": 80}], "bandwidth": {"ingressRate": 1}, "dns": {}}
    config = plugin_config(network, plugin, prev_result={"ips": []}, capability_args=cap)
    assert config["runtimeConfig"] == {"portMappings": [{"hostPort": 80}]}
    assert config["prevResult"] == {"ips": []}
    assert config["name"] == "n" and config["cniVersion"] == "1.0.0"


def test_plugin_config_without_capabilities_has_no_runtime_config() -> None:
    network = NetworkConfList(name="n", cni_version="0.4.0", plugins=())
    plugin = PluginConf(type="bridge", raw={"type": "bridge", "bridge": "b0"})
    config = plugin_config(network, plugin, prev_result=None, capability_args={"dns": {}})
    assert config == {"type": "bridge", "bridge": "b0", "name": "n", "cniVersion": "0.4.0"}

"""Executing CNI plugin binaries (the CNI spec's execution protocol).

A plugin gets its parameters in ``CNI_*`` environment variables and its network configuration
on stdin, and prints a result (or an error object ``{code, msg, details}``) on stdout. Each
plugin runs in its own process group: a plugin that overruns its timeout is killed together
with the IPAM plugin or ``iptables`` it may be waiting on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from cri import errors
from cri.cni.config import NetworkConfList, PluginConf, find_plugin

log = structlog.get_logger(__name__)

IFNAME = "eth0"
_REAP_TIMEOUT = 2.0
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginCall:
    """One execution of one plugin: the verb, its CNI_* parameters and its stdin config."""

    command: str  # ADD, DEL, CHECK, STATUS, VERSION
    network: str
    plugin: str  # the plugin's type, i.e. its binary name
    config: Mapping[str, Any]
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    cni_args: str = ""


class CniPluginError(errors.Unavailable):
    """A plugin reported an error (or died); carries the CNI error code when it gave one."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class PluginExecutor(Protocol):
    """Runs a plugin call; the seam tests replace.

    Returns the decoded JSON the plugin printed, or None if it printed nothing. Raises
    CniPluginError (an Unavailable) when the plugin fails or is missing, DeadlineExceeded when
    it overruns its timeout (it is killed, with its process group, before this returns).
    """

    async def __call__(self, call: PluginCall) -> Mapping[str, Any] | None: ...


def plugin_config(
    network: NetworkConfList,
    plugin: PluginConf,
    *,
    prev_result: Mapping[str, Any] | None,
    capability_args: Mapping[str, Any],
) -> dict[str, Any]:
    """The stdin config of one plugin in a chain (name, cniVersion, prevResult, runtimeConfig).

    ``runtimeConfig`` gets only the capability arguments the plugin declares.
    """
    config = dict(plugin.raw)
    config["name"] = network.name
    config["cniVersion"] = network.cni_version
    if prev_result is not None:
        config["prevResult"] = dict(prev_result)
    runtime = {k: v for k, v in capability_args.items() if k in plugin.capabilities}
    if runtime:
        existing = config.get("runtimeConfig")
        config["runtimeConfig"] = {**(existing if isinstance(existing, Mapping) else {}), **runtime}
    return config


def _error_message(call: PluginCall, returncode: int, stdout: bytes, stderr: bytes) -> str:
    target = f"pod {call.container_id}" if call.container_id else f"network {call.network}"
    head = f"cni plugin {call.plugin} {call.command} for {target} failed"
    detail = _decode_error(stdout)
    if detail is None:
        text = (stderr or stdout).decode(errors="replace").strip() or "no output"
        return f"{head} (exit status {returncode}): {text}"
    code, msg, details = detail
    suffix = f": {details}" if details else ""
    return f"{head} (code {code}): {msg}{suffix}"


def _decode_error(stdout: bytes) -> tuple[int | None, str, str] | None:
    try:
        obj = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(obj, dict) or "msg" not in obj:
        return None
    code = obj.get("code")
    return (code if isinstance(code, int) else None, str(obj["msg"]), str(obj.get("details", "")))


def _error_code(stdout: bytes) -> int | None:
    detail = _decode_error(stdout)
    return None if detail is None else detail[0]


class SubprocessExecutor:
    """The real executor: finds ``<plugin_dir>/<type>`` and runs it."""

    def __init__(self, plugin_dirs: Sequence[Path], timeout: float) -> None:
        self._plugin_dirs = tuple(plugin_dirs)
        self._timeout = timeout

    def environment(self, call: PluginCall) -> dict[str, str]:
        """Our environment (plugins need PATH for iptables) with the CNI_* keys replaced."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        env.setdefault("PATH", _DEFAULT_PATH)
        env["CNI_COMMAND"] = call.command
        env["CNI_PATH"] = os.pathsep.join(str(d) for d in self._plugin_dirs)
        if call.command in ("ADD", "DEL", "CHECK"):
            env["CNI_CONTAINERID"] = call.container_id
            env["CNI_NETNS"] = call.netns
            env["CNI_IFNAME"] = call.ifname
            env["CNI_ARGS"] = call.cni_args
        return env

    async def __call__(self, call: PluginCall) -> Mapping[str, Any] | None:
        binary = find_plugin(call.plugin, self._plugin_dirs)
        if binary is None:
            dirs = os.pathsep.join(str(d) for d in self._plugin_dirs)
            raise CniPluginError(f"cni plugin binary {call.plugin!r} not found in {dirs}")
        stdin = json.dumps(call.config).encode()
        returncode, stdout, stderr = await self._run(binary, stdin, call)
        if returncode != 0:
            message = _error_message(call, returncode, stdout, stderr)
            raise CniPluginError(message, code=_error_code(stdout))
        return _decode_output(call, stdout)

    async def _run(self, binary: Path, stdin: bytes, call: PluginCall) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            binary,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.environment(call),
            process_group=0,
        )
        try:
            async with asyncio.timeout(self._timeout):
                stdout, stderr = await proc.communicate(stdin)
        except TimeoutError:
            await _kill(proc)
            target = call.container_id or call.network
            raise errors.DeadlineExceeded(
                f"cni plugin {call.plugin} {call.command} for {target} did not finish in "
                f"{self._timeout:g}s and was killed"
            ) from None
        except BaseException:  # cancelled: killpg happens before _kill's first await
            await _kill(proc)
            raise
        assert proc.returncode is not None
        return proc.returncode, stdout, stderr


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the plugin's process group and reap the plugin.

    asyncio reports the exit only once the pipes are closed too, so a descendant that left the
    group and holds them would block the wait: it is bounded, and such a leak is logged.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        async with asyncio.timeout(_REAP_TIMEOUT):
            await proc.wait()
    except TimeoutError:
        log.warning("cni plugin pipes held open after kill", pid=proc.pid)


def _decode_output(call: PluginCall, stdout: bytes) -> Mapping[str, Any] | None:
    if not stdout.strip():
        return None
    try:
        obj = json.loads(stdout)
    except ValueError:
        raise CniPluginError(
            f"cni plugin {call.plugin} {call.command} printed invalid JSON: {stdout[:200]!r}"
        ) from None
    if not isinstance(obj, dict):
        raise CniPluginError(f"cni plugin {call.plugin} {call.command} printed a non-object")
    return obj

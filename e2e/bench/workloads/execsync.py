"""Exec: ExecSync round trips (`true` run N times back to back in one running container, the
probe pattern) and streaming exec throughput (bytes a command writes to stdout, through the
runtime's streaming server, read by `crictl exec` over SPDY and over WebSocket).

The throughput figures need `crictl` on PATH (a Go client, so the client is not what is
measured); without it they record "skipped".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from functools import partial
from typing import Final

from cri.api.v1 import api_pb2
from e2e.bench import cri_ops, procfs
from e2e.bench.cri_ops import Target
from e2e.bench.options import Options
from e2e.bench.records import FigureSpec, Results
from e2e.bench.workloads import Context
from e2e.bench.workloads.common import attempt

KEY = "exec.sync"
CPU_KEY = "exec.cpu"
TRANSPORTS: Final = ("spdy", "websocket")
MIB: Final = 1 << 20


def stream_key(transport: str) -> str:
    return f"exec.stream.{transport}"


class ExecWorkload:
    name = "exec"

    def define(self, results: Results, options: Options) -> None:
        results.define(FigureSpec(key=KEY, title="ExecSync round trip (`true`)", unit="ms",
                                  group="exec"))  # fmt: skip
        results.define(FigureSpec(
            key=CPU_KEY, unit="ms", group="exec",
            title="CPU per ExecSync: daemon + shims, with the processes they reaped (runc)",
        ))  # fmt: skip
        for transport in TRANSPORTS:
            results.define(FigureSpec(
                key=stream_key(transport),
                title=f"exec stdout throughput, crictl --transport {transport}",
                unit="MiB/s", group="exec-stream", better="higher",
            ))  # fmt: skip

    def repetitions(self, options: Options) -> int:
        return options.reps

    def run(self, target: Target, ctx: Context) -> None:
        res = ctx.results
        started = attempt(res, KEY, target.name,
                          partial(cri_ops.start_pod, target, cri_ops.unique("exec")))  # fmt: skip
        if started is None:
            return
        request = api_pb2.ExecSyncRequest(container_id=started.container_id, cmd=["true"],
                                          timeout=30)  # fmt: skip
        cpu_before, done = _cpu(target), 0
        for _ in range(ctx.options.exec_calls):
            outcome = attempt(res, KEY, target.name, partial(_exec, target, request))
            if outcome is not None:
                res.add(KEY, target.name, outcome)
                done += 1
        if cpu_before is not None and (cpu_after := _cpu(target)) is not None and done:
            res.add(CPU_KEY, target.name, (cpu_after - cpu_before) / done * 1000)
        for transport in TRANSPORTS:
            self._stream(target, ctx, started.container_id, transport)
        attempt(res, KEY, target.name, partial(cri_ops.teardown_pod, target, started.pod.id))

    def _stream(self, target: Target, ctx: Context, container_id: str, transport: str) -> None:
        key = stream_key(transport)
        crictl = shutil.which("crictl")
        if crictl is None:
            ctx.results.set_status(key, target.name, "skipped: crictl not on PATH")
            return
        size = ctx.options.exec_stream_mb * MIB
        call = partial(stream_exec, crictl, target, container_id, transport, size)
        outcome = attempt(ctx.results, key, target.name, call)
        if outcome is not None:
            ctx.results.add(key, target.name, outcome)


def _cpu(target: Target) -> float | None:
    """CPU seconds of the runtime's daemon and shims, with the children they reaped; None
    without a daemon pid. The exec'd `runc` (and the command) are children of a shim or of
    a process it forked and waited for, on both runtimes."""
    daemon = target.runtime.daemon_pid()
    if daemon is None:
        return None
    pids = [daemon, *target.runtime.shim_pids()]
    return sum(procfs.cpu_seconds(p, children=True) or 0.0 for p in pids)


def _exec(target: Target, request: api_pb2.ExecSyncRequest) -> float:
    ms, resp = cri_ops.timed(lambda: target.rt.ExecSync(request, timeout=60))
    if resp.exit_code != 0:
        raise RuntimeError(f"`true` exited {resp.exit_code}: {resp.stderr[:200]!r}")
    return ms


def stream_exec(crictl: str, target: Target, container_id: str, transport: str,
                size: int) -> float:  # fmt: skip
    """MiB/s of `head -c <size> /dev/zero` run by `crictl exec`, counted as it arrives.

    The time includes crictl's start and the Exec call (a few ms against a transfer of a
    second or more); the bytes read must be exactly `size`.
    """
    argv = [crictl, "--runtime-endpoint", target.runtime.endpoint, "--timeout", "60s",
            "exec", "--transport", transport, container_id,
            "head", "-c", str(size), "/dev/zero"]  # fmt: skip
    began = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        got = 0
        while chunk := os.read(proc.stdout.fileno(), MIB):
            got += len(chunk)
        err = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait(timeout=60)
    seconds = time.perf_counter() - began
    if code != 0 or got != size:
        raise RuntimeError(f"crictl exec ({transport}) exited {code}, read {got} of {size} "
                           f"bytes: {err[-300:]}")  # fmt: skip
    return size / MIB / seconds

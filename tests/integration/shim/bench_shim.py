"""Measure the shim: spawn latency, memory per shim, container create+start latency.

Run as root: `.venv/bin/python -m tests.integration.shim.bench_shim [N]`.
Prints figures; asserts nothing (a benchmark is not a timed test). Uses a
tmpfs directory under /run like berthd does, and cleans up everything.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from shim import api, client, launcher
from tests.integration.shim import bundle


def smaps(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB from /proc/<pid>/smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) / 1024
    return fields["Rss"], fields["Pss"]


def p50(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.2f} ms, p90 {_p90(values) * 1000:.2f} ms"


def _p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9) - 1]


def memory(label: str, pids: list[int]) -> None:
    rss, pss = zip(*(smaps(p) for p in pids), strict=True)
    print(
        f"{label}: n={len(pids)} RSS {statistics.mean(rss):.2f} MiB, "
        f"PSS {statistics.mean(pss):.2f} MiB per shim (total PSS {sum(pss):.1f} MiB)"
    )


class Bench:
    def __init__(self, base: Path, rootfs: Path, lau: launcher.Launcher) -> None:
        self.base, self.rootfs, self.lau = base, rootfs, lau
        self.clients: list[client.ShimClient] = []
        self.n = 0

    async def spawn(self) -> client.ShimClient:
        self.n += 1
        cid = f"bench{self.n}-{int(time.time())}"
        c = await self.lau.spawn(api.ShimSpec(id=cid, state_dir=self.base / cid))
        self.clients.append(c)
        return c

    def params(self, cid: str, args: list[str]) -> api.CreateParams:
        b = bundle.write_bundle(self.base / f"b-{cid}", bundle.config(cid, args))
        mount = api.Mount(type="bind", source=str(self.rootfs), options=("rbind", "ro"))
        return api.CreateParams(
            bundle=str(b),
            runtime_root=str(self.base / "runc"),
            rootfs_mounts=(mount,),
            log_path=str(self.base / f"{cid}.log"),
        )

    async def delete_all(self) -> None:
        for c in self.clients:
            await c.delete()
        self.clients.clear()


async def run(n: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="berth-bench-", dir="/run"))
    rootfs = bundle.make_rootfs(base / "rootfs")
    lau = await launcher.Launcher.start(base / "tpl")
    b = Bench(base, rootfs, lau)
    try:
        await _measure(b, n)
    finally:
        await b.delete_all()
        await lau.close()
        bundle.remove_test_cgroups()
        shutil.rmtree(base, ignore_errors=True)


async def _measure(b: Bench, n: int) -> None:
    rss, pss = smaps(b.lau.pid)
    print(f"template: RSS {rss:.2f} MiB, PSS {pss:.2f} MiB")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await b.spawn()
        times.append(time.perf_counter() - t0)
    print(f"spawn from template (request + connect), n={n}: {p50(times)}")
    await asyncio.sleep(0.3)
    memory("idle shim, alone", [b.clients[0].pid]) if n == 1 else None
    memory("idle shims forked from the template", [c.pid for c in b.clients])
    await _containers(b)
    await b.delete_all()
    await _direct(b)


async def _containers(b: Bench) -> None:
    create, start, stop = [], [], []
    for c in b.clients:
        p = b.params(c.id, ["sleep", "1000"])
        t0 = time.perf_counter()
        await c.create(p)
        t1 = time.perf_counter()
        await c.start()
        t2 = time.perf_counter()
        create.append(t1 - t0)
        start.append(t2 - t1)
    print(f"create (bind mount + runc create) via shim: {p50(create)}")
    print(f"start (runc start) via shim: {p50(start)}")
    await asyncio.sleep(0.3)
    memory("shims with a running container", [c.pid for c in b.clients])
    r = await b.clients[0].exec_sync(["true"])
    assert r.exit_code == 0
    for c in b.clients:
        t0 = time.perf_counter()
        await c.kill(signal.SIGKILL)
        await c.wait()
        stop.append(time.perf_counter() - t0)
    print(f"kill + reap + exit.json via shim: {p50(stop)}")


async def _direct(b: Bench) -> None:
    times = []
    for i in range(5):
        t0 = time.perf_counter()
        c = await launcher.spawn_direct(api.ShimSpec(id=f"direct{i}", state_dir=b.base / f"d{i}"))
        times.append(time.perf_counter() - t0)
        b.clients.append(c)
    print(f"direct spawn (exec, no template): {p50(times)}")
    await asyncio.sleep(0.3)
    memory("exec'd shims", [c.pid for c in b.clients])


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 50))

"""Measure the shim: spawn latency, memory per shim, container create+start latency.

Run as root: `.venv/bin/python -m tests.integration.shim.bench_shim [N] [--settle S]`.
Prints figures; asserts nothing (a benchmark is not a timed test). Uses a
tmpfs directory under /run like berthd does, and cleans up everything.

Memory is per shim: RSS, PSS and Private_Dirty from smaps_rollup. With
`--settle S` the running shims are measured again every 10 s for S seconds,
with the KSM counters: where the host runs KSM (/sys/kernel/mm/ksm/run = 1)
the pages the shims dirtied get merged back (see shim.template).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

from shim import api, client, launcher
from tests.integration.shim import bundle

KSM = Path("/sys/kernel/mm/ksm")


def rollup(pid: int) -> dict[str, float]:
    """/proc/<pid>/smaps_rollup in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) / 1024
    return fields


def smaps(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB from /proc/<pid>/smaps_rollup."""
    fields = rollup(pid)
    return fields["Rss"], fields["Pss"]


def ksm_state() -> str:
    try:
        values = {k: (KSM / k).read_text().strip() for k in ("run", "full_scans", "pages_sharing")}
    except OSError:
        return "no KSM"
    return " ".join(f"{k}={v}" for k, v in values.items())


def p50(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.2f} ms, p90 {_p90(values) * 1000:.2f} ms"


def _p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9) - 1]


def memory(label: str, pids: list[int]) -> None:
    rows = [rollup(p) for p in pids]
    rss, pss, dirty = ([r[k] for r in rows] for k in ("Rss", "Pss", "Private_Dirty"))
    print(
        f"{label}: n={len(pids)} RSS {statistics.mean(rss):.2f} MiB, "
        f"PSS {statistics.mean(pss):.2f} MiB, Private_Dirty {statistics.mean(dirty):.2f} MiB "
        f"per shim (total PSS {sum(pss):.1f} MiB)"
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


async def run(n: int, settle: float = 0.0) -> None:
    base = Path(tempfile.mkdtemp(prefix="berth-bench-", dir="/run"))
    rootfs = bundle.make_rootfs(base / "rootfs")
    lau = await launcher.Launcher.start(base / "tpl")
    b = Bench(base, rootfs, lau)
    try:
        await _measure(b, n, settle)
    finally:
        await b.delete_all()
        await lau.close()
        bundle.remove_test_cgroups()
        shutil.rmtree(base, ignore_errors=True)


async def _measure(b: Bench, n: int, settle: float) -> None:
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
    await _containers(b, settle)
    await b.delete_all()
    await _direct(b)


async def _containers(b: Bench, settle: float) -> None:
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
    print(f"KSM: {ksm_state()}")
    waited = 0
    while waited < settle:
        await asyncio.sleep(10)
        waited += 10
        memory(f"shims with a running container, {waited} s later", [c.pid for c in b.clients])
        print(f"KSM: {ksm_state()}")
    if settle:
        await _calls_after_idle(b)
    r = await b.clients[0].exec_sync(["true"])
    assert r.exit_code == 0
    for c in b.clients:
        t0 = time.perf_counter()
        await c.kill(signal.SIGKILL)
        await c.wait()
        stop.append(time.perf_counter() - t0)
    print(f"kill + reap + exit.json via shim: {p50(stop)}")


async def _calls_after_idle(b: Bench) -> None:
    """A call to each shim after the wait (its pages may have been merged), then another."""
    first, again = [], []
    for c in b.clients:
        t0 = time.perf_counter()
        await c.state()
        t1 = time.perf_counter()
        await c.state()
        first.append(t1 - t0)
        again.append(time.perf_counter() - t1)
    print(f"state call after the wait: first {p50(first)}; the next one {p50(again)}")
    memory("shims with a running container, after one call each", [c.pid for c in b.clients])


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=50, help="shims (default 50)")
    parser.add_argument("--settle", type=float, default=0.0, help="seconds to watch KSM merge")
    args = parser.parse_args()
    asyncio.run(run(args.n, args.settle))

"""The soak, phase by phase:

1. **setup**: berthd starts, busybox is pulled, one pod is started and removed (what berthd
   opens once, on first use, is then open); the node's state and berthd's fds are the baseline.
2. **fill**: ``pods`` pods with ``containers`` containers each are started, ``fill_workers``
   at a time. The first half are *stable* (kept to the end), the rest *churnable*.
3. **churn** for ``churn_s`` seconds: each churn worker starts a new pod, waits for its first
   log line, probes it, then retires the oldest churnable pod (containers still running, log
   whole, stop, remove) — so the population stays at ``pods`` (plus one per worker at most).
   Beside them, exec probes at ``exec_rate`` per second on random pods, and the kubelet's
   relist (every ``relist_interval`` s) and stats calls (every ``stats_interval`` s).
4. **drain**: every pod is retired the same way.
5. **idle**: shims exit, fds close; then the leak check (`e2e.soak.leaks`), the memory verdict
   (`e2e.soak.analysis`), and berthd is stopped: it must exit 0 and leave no mount.

berthd is sampled every ``sample_interval`` seconds all along (`e2e.soak.sampler`); a progress
line is printed every ``progress_interval`` seconds.
"""

from __future__ import annotations

import os
import random
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cri.api.v1 import api_pb2
from e2e.drill.environment import DrillEnv
from e2e.soak import analysis, tracemem
from e2e.soak.leaks import leak_check, settle
from e2e.soak.population import Pod, Population
from e2e.soak.sampler import Sample, Sampler, fd_count
from e2e.soak.workload import CallFailed, Ops, Setting, Tally
from tests.support.failpoint_node import NodeState, shim_processes


@dataclass(frozen=True, slots=True, kw_only=True)
class SoakConfig:
    pods: int = 110
    containers: int = 2
    churn_s: float = 1800.0
    churn_workers: int = 2
    cycle_pause: float = 1.0  # seconds a churn worker rests between cycles
    exec_rate: float = 4.0  # exec probes per second, over all pods
    relist_interval: float = 1.0  # 0: no relist
    stats_interval: float = 10.0  # 0: no stats calls
    fill_workers: int = 4
    sample_interval: float = 5.0
    progress_interval: float = 60.0
    fd_slack: int = 8
    seed: int = 0
    trace_dir: Path | None = None  # run berthd under tracemalloc, snapshots here
    memory: analysis.MemoryLimits = field(default_factory=analysis.MemoryLimits)


@dataclass(slots=True)
class Report:
    config: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)  # per phase
    pods_started: int = 0
    pods_removed: int = 0
    pods_churned: int = 0  # started during the churn
    containers_churned: int = 0
    cycle: analysis.Durations | None = None
    probes: int = 0
    probes_failed: int = 0
    log_lines_checked: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    memory: analysis.MemoryVerdict | None = None
    cpu: analysis.CpuFigures | None = None
    fds: dict[str, int] = field(default_factory=dict)
    threads: dict[str, int] = field(default_factory=dict)
    shims_peak: int = 0
    leaks: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # failed calls, probes and logs
    traced: list[str] = field(default_factory=list)  # with trace_dir: the largest growths
    samples: list[Sample] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        memory = self.memory is None or bool(self.memory.problems)
        return bool(self.leaks or self.violations) or memory

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["failed"] = self.failed
        return out

    def text(self) -> str:
        return summary_text(self)


class Soak:
    def __init__(self, env: DrillEnv, config: SoakConfig) -> None:
        self.env = env
        self.config = config
        self.rng = random.Random(config.seed)
        self.tally = Tally()
        self.population = Population()
        self.stop = threading.Event()
        self.report = Report(config=asdict(config))
        self.cycles: list[float] = []
        self.names = 0
        self.lock = threading.Lock()
        self.began = time.monotonic()
        self.sampler: Sampler | None = None
        self.ops: Ops | None = None
        self.baseline: NodeState | None = None
        self.fds_baseline = 0

    # -- the phases ----------------------------------------------------------------------------

    def run(self) -> Report:
        daemon = self.env.daemon
        if self.config.trace_dir is not None:
            self.config.trace_dir.mkdir(parents=True, exist_ok=True)
            os.environ[tracemem.DIR_ENV] = str(self.config.trace_dir)
            daemon.command = list(tracemem.COMMAND)
        try:
            daemon.start(timeout=120.0)
        except BaseException:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.kill()  # still starting: it must not outlive the soak
            raise
        assert daemon.proc is not None
        self.began = time.monotonic()
        self.sampler = Sampler(
            daemon.proc.pid,
            daemon.state,
            self.config.sample_interval,
            lambda: (len(self.population), self.population.containers()),
            self.began,
        )
        self.sampler.on_sample = self._progress
        self.ops = Ops(
            daemon.client,
            Setting(
                image=self.env.image,
                log_dir=self.env.log_dir,
                cgroup_parent=self.env.cgroup_parent,
                containers=self.config.containers,
            ),
            self.tally,
        )
        try:
            self._timed("setup", self._setup)
            self.sampler.start()
            self._timed("fill", self._fill)
            self._timed("churn", self._churn)
            self._timed("drain", self._drain)
            self._timed("idle", self._idle)
        except Exception:
            self.tally.violation(f"the soak stopped: {traceback.format_exc()}")
            self.stop.set()
            self._drain()
        finally:
            if self.sampler._thread.is_alive():
                self.sampler.stop()
        self._finish()
        return self.report

    def _timed(self, name: str, step: Callable[[], None]) -> None:
        assert self.sampler is not None
        self.sampler.phase = name
        began = time.monotonic()
        print(f"[{self._clock()}] {name} …", flush=True)
        step()
        self.report.seconds[name] = round(time.monotonic() - began, 1)

    def _setup(self) -> None:
        assert self.ops is not None and self.sampler is not None
        spec = api_pb2.ImageSpec(image=self.env.image)
        self.ops.client.images.PullImage(api_pb2.PullImageRequest(image=spec), timeout=120)
        pod = self.ops.start_pod(self._name("warmup"), stable=False)
        self.ops.wait_first_line(pod)
        self.ops.retire(pod, self.rng)
        settle(lambda: not shim_processes(self.env.daemon.state), timeout=30)
        self.baseline = self.env.node.inspect()
        first = self.sampler.take()
        self.fds_baseline = first.fds
        self.report.fds["baseline"] = first.fds
        self.report.threads["baseline"] = first.threads

    def _fill(self) -> None:
        assert self.ops is not None
        stable = self.config.pods // 2
        with ThreadPoolExecutor(self.config.fill_workers, thread_name_prefix="soak-fill") as pool:
            started = list(
                pool.map(lambda i: self._add_pod(stable=i < stable), range(self.config.pods))
            )
        for pod in started:
            if pod is not None:
                self.ops.wait_first_line(pod)

    def _add_pod(self, *, stable: bool) -> Pod | None:
        assert self.ops is not None
        try:
            pod = self.ops.start_pod(self._name("stable" if stable else "pod"), stable=stable)
        except CallFailed as exc:
            self.tally.violation(f"starting a pod: {exc}")
            return None
        self.population.add(pod)
        return pod

    def _churn(self) -> None:
        threads = [
            threading.Thread(target=self._guard(self._churn_worker, i), name=f"soak-churn-{i}")
            for i in range(self.config.churn_workers)
        ]
        threads += self._kubelet_threads()
        for thread in threads:
            thread.start()
        began = time.monotonic()
        snapshots = []
        if self.config.trace_dir is not None:
            self.stop.wait(min(self.config.memory.warmup_s, self.config.churn_s))
            snapshots.append(self._snapshot())
        self.stop.wait(max(0.0, self.config.churn_s - (time.monotonic() - began)))
        if self.config.trace_dir is not None:
            snapshots.append(self._snapshot())
        self.stop.set()
        for thread in threads:
            thread.join()
        if len(snapshots) == 2 and snapshots[0] and snapshots[1]:
            self.report.traced = tracemem.growth(snapshots[0], snapshots[1])

    def _snapshot(self) -> Path | None:
        assert self.config.trace_dir is not None and self.env.daemon.proc is not None
        print(f"[{self._clock()}] tracemalloc snapshot …", flush=True)
        return tracemem.request(self.env.daemon.proc.pid, self.config.trace_dir)

    def _kubelet_threads(self) -> list[threading.Thread]:
        assert self.ops is not None
        out = []
        if self.config.exec_rate > 0:
            probers = max(1, min(4, round(self.config.exec_rate)))
            interval = probers / self.config.exec_rate
            for i in range(probers):
                step = self._probe_step(random.Random(self.config.seed * 100 + i))
                out.append(self._every(f"soak-probe-{i}", interval, step))
        if self.config.relist_interval > 0:
            out.append(self._every("soak-relist", self.config.relist_interval, self.ops.relist))
        if self.config.stats_interval > 0:
            out.append(self._every("soak-stats", self.config.stats_interval, self.ops.stats))
        return out

    def _probe_step(self, rng: random.Random) -> Callable[[], None]:
        def step() -> None:
            assert self.ops is not None
            loan = self.population.borrow(rng)
            if loan is None:
                return
            pod, cid = loan
            try:
                self.ops.probe(pod, cid)
            finally:
                self.population.give_back(pod)

        return step

    def _every(self, name: str, interval: float, step: Callable[[], None]) -> threading.Thread:
        """A thread that calls ``step`` every ``interval`` seconds (a steady rate: a slow call
        delays the next one, it does not bunch them up) until the churn ends."""

        def loop() -> None:
            next_at = time.monotonic() + self.rng.uniform(0, interval)
            while not self.stop.wait(max(0.0, next_at - time.monotonic())):
                try:
                    step()
                except CallFailed as exc:
                    self.tally.violation(f"{name}: {exc}")
                next_at = max(next_at + interval, time.monotonic())

        return threading.Thread(target=self._guard(loop), name=name)

    def _churn_worker(self, index: int) -> None:
        assert self.ops is not None
        rng = random.Random(self.config.seed * 1000 + index)
        while not self.stop.is_set():
            began = time.monotonic()
            pod = self._add_pod(stable=False)
            if pod is not None:
                self.ops.wait_first_line(pod)
                self.ops.probe(pod, rng.choice(pod.containers))
                with self.lock:
                    self.report.pods_churned += 1
                    self.report.containers_churned += len(pod.containers)
            old = self.population.take_oldest_churnable()
            if old is not None:
                self.ops.retire(old, rng)
            with self.lock:
                self.cycles.append(time.monotonic() - began)
            self.stop.wait(self.config.cycle_pause)

    def _guard(self, target: Callable[..., None], *args: Any) -> Callable[[], None]:
        """A thread's body whose unexpected exception is a violation, not a silent death."""

        def body() -> None:
            try:
                target(*args)
            except Exception:
                self.tally.violation(f"thread crashed: {traceback.format_exc()}")

        return body

    def _drain(self) -> None:
        assert self.ops is not None
        ops = self.ops
        pods = self.population.take_all()
        with ThreadPoolExecutor(self.config.fill_workers, thread_name_prefix="soak-drain") as pool:
            list(pool.map(lambda p: ops.retire(p, self.rng), pods))

    def _idle(self) -> None:
        daemon = self.env.daemon
        assert daemon.proc is not None
        pid = daemon.proc.pid
        settle(
            lambda: (
                not shim_processes(daemon.state)
                and fd_count(pid) <= self.fds_baseline + self.config.fd_slack
            )
        )

    # -- the end -------------------------------------------------------------------------------

    def _finish(self) -> None:
        daemon = self.env.daemon
        report = self.report
        assert self.sampler is not None
        last = self.sampler.take()
        report.samples = self.sampler.snapshot()
        report.fds["end"] = last.fds
        report.threads["end"] = last.threads
        full = [s for s in report.samples if s.phase == "churn"]
        if full:
            report.fds["churn_max"] = max(s.fds for s in full)
            report.threads["churn_max"] = max(s.threads for s in full)
        report.shims_peak = max((s.shims for s in report.samples), default=0)
        with self.tally.lock:
            report.pods_started = self.tally.pods_started
            report.pods_removed = self.tally.pods_removed
            report.probes = self.tally.probes
            report.probes_failed = self.tally.probes_failed
            report.log_lines_checked = self.tally.log_lines_checked
            report.calls = dict(sorted(self.tally.calls.items()))
            report.failures = dict(sorted(self.tally.failures.items()))
            report.violations = list(self.tally.violations)
        report.cycle = analysis.durations(self.cycles)
        report.cpu = analysis.cpu_figures(report.samples)
        try:
            report.memory = analysis.memory_verdict(
                report.samples, self.config.memory, report.pods_churned
            )
        except ValueError as exc:
            report.violations.append(f"no memory verdict: {exc}")
        if self.baseline is not None and daemon.proc is not None:
            report.leaks += leak_check(
                self.env.node,
                self.baseline,
                daemon.client,
                last.fds,
                self.fds_baseline,
                self.config.fd_slack,
            )
        report.leaks += self._stop_cleanly()

    def _stop_cleanly(self) -> list[str]:
        daemon = self.env.daemon
        code = daemon.stop()
        found = [f"berthd exited {code} when stopped"] if code != 0 else []
        left = self.env.node.inspect().mounts
        keep = (str(daemon.root), str(daemon.state))
        return found + [f"mount left after berthd stopped: {m}" for m in left if m not in keep]

    # -- small things --------------------------------------------------------------------------

    def _name(self, prefix: str) -> str:
        with self.lock:
            self.names += 1
            return f"soak-{prefix}-{self.names}"

    def _clock(self) -> str:
        seconds = int(time.monotonic() - self.began)
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    def _progress(self, sample: Sample) -> None:
        every = max(1, round(self.config.progress_interval / self.config.sample_interval))
        samples = self.sampler.snapshot() if self.sampler else []
        if len(samples) % every:
            return
        back = samples[-every - 1] if len(samples) > every else samples[0]
        span = sample.t - back.t
        cpu = 100.0 * (sample.cpu_s - back.cpu_s) / span if span > 0 else 0.0
        with self.tally.lock:
            probes, failed = self.tally.probes, self.tally.probes_failed
            violations = len(self.tally.violations)
        print(
            f"[{self._clock()}] {sample.phase:5s} pods {sample.pods:3d} ctrs "
            f"{sample.containers:3d} shims {sample.shims:3d} | rss {sample.rss_mib:6.1f} MiB "
            f"pss {sample.pss_mib:6.1f} MiB cpu {cpu:5.1f}% fds {sample.fds:4d} "
            f"threads {sample.threads:3d} | churned {self.report.pods_churned} "
            f"probes {probes} ({failed} failed) violations {violations} "
            f"load {sample.load1:.1f}",
            flush=True,
        )


def summary_text(report: Report) -> str:
    lines = [f"soak: {'FAILED' if report.failed else 'passed'}"]
    config = report.config
    lines.append(
        f"  {config['pods']} pods x {config['containers']} containers; phases "
        + ", ".join(f"{k} {v:.0f}s" for k, v in report.seconds.items())
    )
    lines.append(
        f"  churned: {report.pods_churned} pods, {report.containers_churned} containers "
        f"({report.pods_started} pods started, {report.pods_removed} removed in all)"
    )
    if report.cycle is not None:
        c = report.cycle
        lines.append(
            f"  churn cycle (start a pod, first log line, probe, retire the oldest): "
            f"p50 {c.p50_s:.2f}s p99 {c.p99_s:.2f}s max {c.max_s:.2f}s over {c.n}"
        )
    lines.append(
        f"  exec probes: {report.probes} done, {report.probes_failed} failed; "
        f"log lines checked: {report.log_lines_checked}"
    )
    m = report.memory
    if m is not None:
        limits = config["memory"]
        slope_limit = "-" if limits["max_slope"] is None else f"{limits['max_slope']:.0f}"
        lines.append(
            f"  berthd RSS (MiB): set-up {m.rss_setup:.1f}, all pods running {m.rss_full:.1f}, "
            f"after warm-up {m.rss_after_warmup:.1f}, end of churn {m.rss_end:.1f}, "
            f"peak {m.rss_peak:.1f}, after drain {m.rss_after_drain:.1f}"
        )
        lines.append(
            f"  flat memory: slope {m.slope_mib_per_h:+.1f} MiB/h (limit {slope_limit}) over "
            f"{m.fitted_samples} samples from {m.fit_from_s:.0f}s to {m.fit_to_s:.0f}s; growth "
            f"{m.growth_mib:+.1f} MiB (limit {limits['max_growth']:.0f}) = "
            f"{m.growth_kib_per_pod:+.2f} KiB per churned pod; PSS {m.pss_after_warmup:.1f} -> "
            f"{m.pss_end:.1f} MiB"
        )
        lines.append(
            f"  slope over the second half of the churn: {m.slope_late_mib_per_h:+.1f} MiB/h"
        )
    if report.cpu is not None:
        c2 = report.cpu
        lines.append(
            f"  berthd CPU during the churn (% of a core): mean {c2.mean_pct:.1f}, "
            f"p50 {c2.p50_pct:.1f}, p99 {c2.p99_pct:.1f}, max {c2.max_pct:.1f}"
        )
    lines.append(
        f"  berthd fds: baseline {report.fds.get('baseline')}, churn max "
        f"{report.fds.get('churn_max')}, end {report.fds.get('end')}; threads: baseline "
        f"{report.threads.get('baseline')}, end {report.threads.get('end')}; "
        f"shims peak {report.shims_peak}"
    )
    failures = {k: v for k, v in report.failures.items() if v}
    lines.append(f"  calls: {sum(report.calls.values())}, failed: {failures or 0}")
    lines += report.traced
    problems = [*(m.problems if m else ()), *report.leaks, *report.violations]
    lines.append(f"  problems: {len(problems)}")
    lines += [f"    - {p[:600]}" for p in problems[:40]]
    if len(problems) > 40:
        lines.append(f"    … and {len(problems) - 40} more (see the JSON)")
    return "\n".join(lines)

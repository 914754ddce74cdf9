"""The crash drill: a concurrent workload, SIGKILL at random moments, checks after each one.

    drill = Drill(env, DrillConfig(seed=7, crashes=200))
    report = drill.run()          # report.violations == [] is the goal

Each crash point: open the gate, let the workers run for a random while, then either SIGKILL
berthd (and start it again) or SIGKILL the shim of a random running container; close the gate,
wait until every worker is parked (no request in flight), and verify (`Checker.verify`). At
the end everything is removed and the node must be exactly as before the drill.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
import traceback
from dataclasses import dataclass, field
from typing import Final

from e2e.drill.checks import Checker
from e2e.drill.environment import DrillEnv
from e2e.drill.ledger import Ack, ContainerFact, Ledger
from e2e.drill.workload import Gate, Link, Setting, Worker

PARK_TIMEOUT: Final = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillConfig:
    seed: int
    crashes: int = 200
    workers: int = 3
    shim_kills: float = 0.2  # share of crash points that kill a shim instead of berthd
    min_run: float = 0.05  # seconds of workload before a crash point
    max_run: float = 1.5
    fail_fast: bool = False


@dataclass(slots=True)
class Point:
    index: int
    kind: str  # "berthd" or "shim"
    after: float  # seconds of workload before the kill
    target: str = ""  # the container whose shim was killed
    restart_s: float = 0.0
    verify_s: float = 0.0
    problems: list[str] = field(default_factory=list)


def kind_of(problem: str) -> str:
    """A problem with its ids, numbers and paths blanked: what groups its repeats."""
    text = re.sub(r"[0-9a-f]{12,64}", "<id>", problem)
    text = re.sub(r"'veth[0-9a-f]+'", "<veth>", text)
    text = re.sub(r"/tmp/\S+", "<path>", text)
    text = re.sub(r"\[[^\]]*\]", "[…]", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)


@dataclass(slots=True)
class Report:
    seed: int
    points: list[Point] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # each distinct problem, first sighting
    acks: dict[str, int] = field(default_factory=dict)
    maybes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def berthd_kills(self) -> int:
        return sum(p.kind == "berthd" for p in self.points)

    @property
    def shim_kills(self) -> int:
        return sum(p.kind == "shim" for p in self.points)

    def text(self) -> str:
        restarts = sorted(p.restart_s for p in self.points if p.kind == "berthd")
        median = restarts[len(restarts) // 2] if restarts else 0.0
        lines = [
            f"crash drill, seed {self.seed}: {len(self.points)} crash points "
            f"({self.berthd_kills} berthd SIGKILLs, {self.shim_kills} shim SIGKILLs) "
            f"in {self.seconds:.0f}s; median restart {median:.2f}s",
            f"acknowledged requests: {sum(self.acks.values())} {dict(sorted(self.acks.items()))}",
            f"outcome unknown (crashed under them): {sum(self.maybes.values())} "
            f"{dict(sorted(self.maybes.items()))}",
            f"crash points with a failed check: {sum(bool(p.problems) for p in self.points)}",
            f"violations: {len(self.violations)} distinct, of {len(self.kinds())} kinds",
        ]
        for kind, examples in self.kinds().items():
            lines.append(f"  [{len(examples)}x] {kind}")
            lines.append(f"        first: {examples[0][:400]}")
        return "\n".join(lines)

    def kinds(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for violation in self.violations:
            grouped.setdefault(kind_of(violation.split(": ", 1)[-1]), []).append(violation)
        return grouped


class Drill:
    def __init__(self, env: DrillEnv, config: DrillConfig) -> None:
        self.env = env
        self.config = config
        self.rng = random.Random(config.seed)
        self.ledger = Ledger(images=list(env.churn))
        self.gate = Gate()
        self.link: Link | None = None
        self.checker: Checker | None = None
        self.workers: list[Worker] = []
        self.report = Report(seed=config.seed)
        self.seen: set[str] = set()

    def run(self) -> Report:
        started = time.monotonic()
        daemon = self.env.daemon
        daemon.start()
        self.link = Link(daemon.socket)
        self.checker = Checker(
            link=self.link,
            node=self.env.node,
            ledger=self.ledger,
            image=self.env.image,
            log_dir=self.env.log_dir,
            cgroup_parent=self.env.cgroup_parent,
        )
        try:
            self._prepare()
            for index in range(self.config.crashes):
                point = self._crash_point(index)
                self.report.points.append(point)
                if point.problems and self.config.fail_fast:
                    break
        except Exception:
            self.report.violations.append(f"the drill stopped: {traceback.format_exc()}")
        try:
            self._finish()
        except Exception:
            self.report.violations.append(f"final clean-up failed: {traceback.format_exc()}")
        self.report.seconds = time.monotonic() - started
        return self.report

    def _prepare(self) -> None:
        assert self.link is not None and self.checker is not None
        from cri.api.v1 import api_pb2

        spec = api_pb2.ImageSpec(image=self.env.image)
        self.link.client.images.PullImage(api_pb2.PullImageRequest(image=spec), timeout=60)
        self.checker.baseline = self.env.node.inspect()
        setting = Setting(
            image=self.env.image, log_dir=self.env.log_dir, cgroup_parent=self.env.cgroup_parent
        )
        for i in range(self.config.workers):
            worker = Worker(
                index=i,
                seed=self.config.seed * 1000 + i,
                link=self.link,
                gate=self.gate,
                ledger=self.ledger,
                setting=setting,
                churn=self.env.churn[i % len(self.env.churn)],
            )
            worker.launch()
            self.workers.append(worker)
        self.gate.wait_parked(len(self.workers), PARK_TIMEOUT)

    def _crash_point(self, index: int) -> Point:
        assert self.link is not None and self.checker is not None
        after = round(self.rng.uniform(self.config.min_run, self.config.max_run), 3)
        kind = "shim" if self.rng.random() < self.config.shim_kills else "berthd"
        point = Point(index=index, kind=kind, after=after)
        self.gate.open()
        time.sleep(after)
        if kind == "shim":
            point.target = self._kill_a_shim()
            if not point.target:
                point.kind = kind = "berthd"
        if kind == "berthd":
            self.link.going_down()
            self.env.daemon.kill()
        self.gate.close()
        if not self.gate.wait_parked(len(self.workers), PARK_TIMEOUT):
            point.problems.append("workers did not park: a request hangs")
        if kind == "berthd":
            began = time.monotonic()
            self.env.daemon.start()
            self.link.back_up()
            point.restart_s = time.monotonic() - began
        began = time.monotonic()
        point.problems += self.checker.verify()
        point.problems += self._drain_worker_violations()
        point.verify_s = time.monotonic() - began
        for problem in point.problems:
            if problem not in self.seen:  # a lasting problem is reported once
                self.seen.add(problem)
                self.report.violations.append(f"point {index} ({kind} after {after}s): {problem}")
        return point

    def _kill_a_shim(self) -> str:
        """SIGKILL the shim of a random running container; its id, or "" if none runs."""
        running = [
            c for c in self.ledger.live_containers()
            if c.id and c.started is Ack.YES and c.stopped is Ack.NO and not c.shim_killed
        ]  # fmt: skip
        if not running:
            return ""
        victim: ContainerFact = self.rng.choice(running)
        pid_file = self.env.daemon.state / "shims" / victim.id / "shim.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError):
            return ""
        victim.shim_killed = True
        os.kill(pid, signal.SIGKILL)
        return victim.id

    def _drain_worker_violations(self) -> list[str]:
        with self.ledger.lock:
            found, self.ledger.violations = self.ledger.violations, []
        return found

    def _finish(self) -> None:
        self.gate.stop()
        for worker in self.workers:
            if worker.thread is not None:
                worker.thread.join(PARK_TIMEOUT)
        self.report.acks = dict(self.ledger.acks)
        self.report.maybes = dict(self.ledger.maybes)
        daemon = self.env.daemon
        if daemon.proc is None:
            return
        assert self.checker is not None and self.link is not None
        from tests.support.failpoint_node import problems, store_view

        # With everything removed, only what an interrupted pull keeps to resume may stay;
        # berthd restarted after a clean stop keeps nothing.
        final = self.checker.remove_all()
        final += problems(
            self.env.node, self.env.node.inspect(), store_view(self.link.client),
            allowed_blobs=self.checker.churn_blobs(), baseline=self.checker.baseline,
        )  # fmt: skip
        final += self._stopped_cleanly()
        daemon.start()
        self.link.back_up()
        final += [f"after a clean restart: {p}" for p in problems(
            self.env.node, self.env.node.inspect(), store_view(self.link.client),
            baseline=self.checker.baseline,
        )]  # fmt: skip
        self.link.close()
        final += self._stopped_cleanly()
        self.report.violations += [f"final: {p}" for p in final]

    def _stopped_cleanly(self) -> list[str]:
        daemon = self.env.daemon
        code = daemon.stop()
        found = [f"berthd exited {code} when stopped"] if code != 0 else []
        leftover = self.env.node.inspect()
        return found + [f"mount left after berthd stopped: {m}" for m in leftover.mounts
                        if m not in (str(daemon.root), str(daemon.state))]  # fmt: skip

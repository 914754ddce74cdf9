"""What the drill's clients were told: every acknowledged request, and the ones whose outcome a
crash made unknown.

A request answered OK is *acked*: its effect must be there after any number of crashes. A
request that failed because berthd went down under it (or while it was down) is *maybe*: either
outcome is fine, but never half of one — after the restart the drill looks at what berthd says
and adopts it. A request that failed while berthd was up failed *for sure* (no effect).

Objects belong to the worker that made them (one kubelet does not race itself on one pod);
the lock only guards the shared tables against the controller reading them.
"""

from __future__ import annotations

import enum
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field


class Ack(enum.Enum):
    NO = "no"  # never asked, or failed for sure
    YES = "yes"
    MAYBE = "maybe"  # outcome unknown: berthd crashed under the request


@dataclass(slots=True)
class PodFact:
    name: str
    owner: int
    id: str = ""  # "" until berthd told us (or the drill found it after a crash)
    created: Ack = Ack.NO
    stopped: Ack = Ack.NO
    removed: Ack = Ack.NO

    @property
    def gone(self) -> bool:
        return self.removed is Ack.YES or (self.created is Ack.NO and not self.id)


@dataclass(slots=True)
class ContainerFact:
    name: str
    pod: PodFact
    command: tuple[str, ...]
    exit_code: int | None  # what it exits with by itself; None: it never does (a sleeper)
    id: str = ""
    created: Ack = Ack.NO
    started: Ack = Ack.NO
    stopped: Ack = Ack.NO
    removed: Ack = Ack.NO
    shim_killed: bool = False
    start_failed: bool = False  # berthd reported a StartError: any exit code goes
    runs_for: float = 0.0  # an exiter's lifetime after start
    started_at: float = 0.0  # time.monotonic() when the start was acked (or found)

    @property
    def gone(self) -> bool:
        return self.removed is Ack.YES or (self.created is Ack.NO and not self.id)


@dataclass(slots=True)
class ImageFact:
    ref: str
    owner: int
    blobs: frozenset[str]
    pulled: Ack = Ack.NO  # the last pull or remove decides
    removed: Ack = Ack.NO


@dataclass(slots=True)
class Ledger:
    pods: list[PodFact] = field(default_factory=list)
    containers: list[ContainerFact] = field(default_factory=list)
    images: list[ImageFact] = field(default_factory=list)
    acks: Counter[str] = field(default_factory=Counter)
    maybes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_pod(self, fact: PodFact) -> PodFact:
        with self.lock:
            self.pods.append(fact)
        return fact

    def add_container(self, fact: ContainerFact) -> ContainerFact:
        with self.lock:
            self.containers.append(fact)
        return fact

    def count(self, op: str, ack: Ack) -> None:
        with self.lock:
            if ack is Ack.YES:
                self.acks[op] += 1
            elif ack is Ack.MAYBE:
                self.maybes[op] += 1

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)

    def live_pods(self, owner: int | None = None) -> Iterator[PodFact]:
        for pod in list(self.pods):
            if not pod.gone and (owner is None or pod.owner == owner):
                yield pod

    def live_containers(self, owner: int | None = None) -> Iterator[ContainerFact]:
        for ctr in list(self.containers):
            if not ctr.gone and not ctr.pod.gone and (owner is None or ctr.pod.owner == owner):
                yield ctr

    def prune(self) -> None:
        """Forget what is gone for sure (keeps verification cheap over many crash points)."""
        with self.lock:
            self.pods = [p for p in self.pods if not p.gone]
            self.containers = [c for c in self.containers if not c.gone and not c.pod.gone]

"""The pods the soak keeps running, shared by the churn workers, the exec probers and the
kubelet loop.

A pod is either *stable* (started in the fill, kept until the end) or *churnable* (a churn
worker retires the oldest one each cycle). A prober borrows a pod for one ExecSync; a pod
being retired is never lent, and its retirement waits until every loan is returned, so no
probe ever races a removal.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(slots=True, kw_only=True)
class Pod:
    name: str
    id: str
    containers: list[str]  # container ids; the first one writes the log lines
    log_file: Path  # the first container's CRI log
    stable: bool
    born: float = field(default_factory=time.monotonic)  # when its log began (about)
    loans: int = 0
    retiring: bool = False


class Population:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pods: dict[str, Pod] = {}

    def __len__(self) -> int:
        with self._cond:
            return len(self._pods)

    def containers(self) -> int:
        with self._cond:
            return sum(len(p.containers) for p in self._pods.values())

    def add(self, pod: Pod) -> None:
        with self._cond:
            self._pods[pod.id] = pod

    def borrow(self, rng: random.Random) -> tuple[Pod, str] | None:
        """A random pod not being retired and one of its containers; `give_back` it after."""
        with self._cond:
            pods = [p for p in self._pods.values() if not p.retiring and p.containers]
            if not pods:
                return None
            pod = rng.choice(pods)
            pod.loans += 1
            return pod, rng.choice(pod.containers)

    def give_back(self, pod: Pod) -> None:
        with self._cond:
            pod.loans -= 1
            self._cond.notify_all()

    def take_oldest_churnable(self) -> Pod | None:
        """The oldest churnable pod, out of the population once no loan is out."""
        with self._cond:
            pods = [p for p in self._pods.values() if not p.stable and not p.retiring]
            if not pods:
                return None
            pod = min(pods, key=lambda p: p.born)
            return self._take(pod)

    def take_all(self) -> list[Pod]:
        with self._cond:
            pods = [p for p in self._pods.values() if not p.retiring]
            return [self._take(p) for p in pods]

    def _take(self, pod: Pod) -> Pod:
        pod.retiring = True
        self._cond.wait_for(lambda: pod.loans == 0)
        del self._pods[pod.id]
        return pod

"""What the soak asks of berthd, the way a kubelet asks it: start a pod with its containers,
probe them with ExecSync, list and collect stats, stop and remove the pod.

Every container runs busybox. The first container of each pod writes a numbered line a second
(``soak 0``, ``soak 1``, …) to stdout; the others sleep. When a pod is retired its log file is
read back: every line in CRI format, the numbers consecutive from 0, about as many as the pod
lived seconds. A call that fails, a probe that answers wrongly or a log that is wrong is a
*violation*: counted, described, and the soak fails.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc

from cri.api.v1 import api_pb2
from e2e.soak.population import Pod
from tests.support.cri_configs import container_config, sandbox_config

CALL_DEADLINE: Final = 60.0
EXEC_TIMEOUT: Final = 10  # seconds, as a kubelet probe's timeoutSeconds
FIRST_LINE_WAIT: Final = 15.0  # seconds a new pod's first log line may take
LOG_SHARE: Final = 0.5  # at least this share of the seconds a pod lived must be logged lines
LOGGER: Final = ("sh", "-c", 'i=0; while true; do echo "soak $i"; i=$((i+1)); sleep 1; done')
SLEEPER: Final = ("sleep", "1000000")
PROBE: Final = ("echo", "ok")
RUNNING: Final = api_pb2.CONTAINER_RUNNING


class CallFailed(Exception):
    """A CRI call failed; the message names the call and the error."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    image: str
    log_dir: Path
    cgroup_parent: str
    containers: int  # per pod


@dataclass(slots=True)
class Tally:
    """What was done and what went wrong, shared by every thread."""

    calls: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    probes: int = 0
    probes_failed: int = 0
    pods_started: int = 0
    pods_removed: int = 0
    log_lines_checked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)

    def count(self, op: str, ok: bool) -> None:
        with self.lock:
            self.calls[op] += 1
            if not ok:
                self.failures[op] += 1


class Ops:
    def __init__(self, client: Any, setting: Setting, tally: Tally) -> None:
        self.client = client
        self.setting = setting
        self.tally = tally

    def call(self, op: str, request: Any) -> Any:
        stub = self.client.runtime
        try:
            response = getattr(stub, op)(request, timeout=CALL_DEADLINE)
        except grpc.RpcError as exc:
            self.tally.count(op, False)
            raise CallFailed(f"{op} failed: {exc.code().name} {exc.details()}") from exc
        self.tally.count(op, True)
        return response

    # -- a pod's life --------------------------------------------------------------------------

    def pod_config(self, name: str) -> api_pb2.PodSandboxConfig:
        config = sandbox_config(name, log_directory=str(self.setting.log_dir / name))
        config.linux.cgroup_parent = self.setting.cgroup_parent
        return config

    def start_pod(self, name: str, *, stable: bool) -> Pod:
        """RunPodSandbox, then create and start each container; on a failure what was made is
        removed again and CallFailed raised."""
        config = self.pod_config(name)
        pod_id = self.call("RunPodSandbox", api_pb2.RunPodSandboxRequest(config=config))
        pod = Pod(
            name=name,
            id=pod_id.pod_sandbox_id,
            containers=[],
            log_file=self.setting.log_dir / name / "c0.log",
            stable=stable,
        )
        try:
            for i in range(self.setting.containers):
                command = LOGGER if i == 0 else SLEEPER
                ctr = container_config(
                    f"c{i}", self.setting.image, list(command), log_path=f"c{i}.log"
                )
                request = api_pb2.CreateContainerRequest(
                    pod_sandbox_id=pod.id, config=ctr, sandbox_config=config
                )
                cid = self.call("CreateContainer", request).container_id
                self.call("StartContainer", api_pb2.StartContainerRequest(container_id=cid))
                pod.containers.append(cid)
                if i == 0:
                    pod.born = time.monotonic()
        except CallFailed:
            self._remove_quietly(pod.id)
            raise
        with self.tally.lock:
            self.tally.pods_started += 1
        return pod

    def wait_first_line(self, pod: Pod) -> None:
        """Violation unless the logger's first line is in its log file within a while."""
        deadline = time.monotonic() + FIRST_LINE_WAIT
        while time.monotonic() < deadline:
            if read_log(pod.log_file):
                return
            time.sleep(0.1)
        self.tally.violation(f"pod {pod.name}: no log line in {FIRST_LINE_WAIT:.0f}s")

    def retire(self, pod: Pod, rng: random.Random) -> None:
        """Check that its containers still run and its log is whole, then stop and remove it
        as a kubelet does (containers, sandbox; then the containers' and the sandbox's
        records). A failure is a violation; the pod is removed in any case."""
        try:
            self._check_running(pod)
            self.check_log(pod)
            for cid in pod.containers:
                timeout = rng.choice([0, 1])  # SIGKILL at once, or after a grace period
                self.call(
                    "StopContainer",
                    api_pb2.StopContainerRequest(container_id=cid, timeout=timeout),
                )
            self.call("StopPodSandbox", api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id))
            for cid in pod.containers:
                self.call("RemoveContainer", api_pb2.RemoveContainerRequest(container_id=cid))
            self.call("RemovePodSandbox", api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id))
        except CallFailed as exc:
            self.tally.violation(f"pod {pod.name}: {exc}")
            self._remove_quietly(pod.id)
            return
        with self.tally.lock:
            self.tally.pods_removed += 1

    def _check_running(self, pod: Pod) -> None:
        for cid in pod.containers:
            request = api_pb2.ContainerStatusRequest(container_id=cid)
            status = self.call("ContainerStatus", request).status
            if status.state != RUNNING:
                state = api_pb2.ContainerState.Name(status.state)
                self.tally.violation(
                    f"pod {pod.name}: container {status.metadata.name} is {state} "
                    f"(exit {status.exit_code}, {status.reason}), it should run"
                )

    def check_log(self, pod: Pod) -> None:
        lived = time.monotonic() - pod.born
        numbers, problems = parse_log(read_log(pod.log_file))
        with self.tally.lock:
            self.tally.log_lines_checked += len(numbers)
        minimum = max(1, int(lived * LOG_SHARE) - 2)
        if len(numbers) < minimum:
            problems.append(f"{len(numbers)} log lines after {lived:.0f}s, expected >= {minimum}")
        for problem in problems:
            self.tally.violation(f"pod {pod.name} log {pod.log_file}: {problem}")

    def _remove_quietly(self, pod_id: str) -> None:
        """Best effort after a failure: the final leak check tells whether it worked."""
        try:
            self.call("RemovePodSandbox", api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        except CallFailed as exc:
            self.tally.violation(f"removing pod {pod_id[:12]} after a failure: {exc}")

    # -- probes and the kubelet's other calls --------------------------------------------------

    def probe(self, pod: Pod, cid: str) -> None:
        """One exec probe: `echo ok` answers "ok" with exit code 0."""
        request = api_pb2.ExecSyncRequest(container_id=cid, cmd=list(PROBE), timeout=EXEC_TIMEOUT)
        problem = ""
        try:
            response = self.call("ExecSync", request)
        except CallFailed as exc:
            problem = str(exc)
        else:
            if response.exit_code != 0 or response.stdout != b"ok\n":
                problem = f"exit {response.exit_code}, stdout {response.stdout[:80]!r}"
        with self.tally.lock:
            self.tally.probes += 1
            self.tally.probes_failed += bool(problem)
        if problem:
            self.tally.violation(f"exec probe in pod {pod.name} {cid[:12]}: {problem}")

    def relist(self) -> None:
        """What the kubelet's PLEG asks every second."""
        self.call("ListPodSandbox", api_pb2.ListPodSandboxRequest())
        self.call("ListContainers", api_pb2.ListContainersRequest())

    def stats(self) -> None:
        """What the kubelet's summary API asks every ten seconds."""
        self.call("ListContainerStats", api_pb2.ListContainerStatsRequest())
        self.call("ListPodSandboxStats", api_pb2.ListPodSandboxStatsRequest())


def read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def parse_log(text: str) -> tuple[list[int], list[str]]:
    """The numbers of the logger's lines and what is wrong with the file: a line not in CRI
    format (``<time> stdout F soak <n>``), a partial line, a number out of sequence."""
    numbers: list[int] = []
    problems: list[str] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        lines.pop()  # a line being written: not complete yet
    for index, line in enumerate(lines):
        parts = line.split(" ", 3)
        if len(parts) != 4 or parts[1] != "stdout" or parts[2] != "F":
            problems.append(f"line {index + 1} is not a full stdout line: {line[:80]!r}")
            continue
        words = parts[3].split()
        if len(words) != 2 or words[0] != "soak" or not words[1].isdigit():
            problems.append(f"line {index + 1} is not the logger's: {line[:80]!r}")
            continue
        number = int(words[1])
        if number != len(numbers):
            problems.append(f"line {index + 1} is number {number}, expected {len(numbers)}")
        numbers.append(number)
    return numbers, problems[:5]

"""Sending fuzzed requests to one running berthd and judging what comes back.

Settings live here: `EXAMPLES` requests per RPC (``BERTH_FUZZ_EXAMPLES``, default 50),
`SEED` (``BERTH_FUZZ_SEED``; unset means hypothesis' derandomized, repeatable order), `TRACE`
(``BERTH_FUZZ_TRACE``: a file that gets every request with its time and code), and the
deadline every call gets. A call must answer in time with a documented status code; the
daemon must stay up; error texts must not carry credentials or file contents; and after the
run nothing may have appeared on the host outside berthd's dirs.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import grpc
from google.protobuf import text_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from cri.api.v1 import api_pb2
from tests.integration.faults.fuzz_strategies import MARK, SECRET, Targets
from tests.integration.faults.harness import FaultHarness

EXAMPLES: Final = int(os.environ.get("BERTH_FUZZ_EXAMPLES", "50"))
SEED: Final = int(os.environ["BERTH_FUZZ_SEED"]) if os.environ.get("BERTH_FUZZ_SEED") else None
TRACE: Final = os.environ.get("BERTH_FUZZ_TRACE", "")  # a file: every request, time, code
CALL_DEADLINE: Final = 10.0
STREAM_WINDOW: Final = 1.0  # a stream that is still open after this long is fine
C = grpc.StatusCode
ALLOWED: Final = frozenset(
    {
        C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, C.ALREADY_EXISTS, C.FAILED_PRECONDITION,
        C.UNIMPLEMENTED, C.DEADLINE_EXCEEDED, C.RESOURCE_EXHAUSTED, C.UNAVAILABLE,
    }
)  # fmt: skip
WATCHED: Final = (Path("/"), Path("/etc"), Path("/tmp"), Path("/var/tmp"), Path("/run"),
                  Path("/root"), Path("/var/lib"), Path("/var/log"))  # fmt: skip
METHODS: Final = [m for s in api_pb2.DESCRIPTOR.services_by_name.values() for m in s.methods]
FILE_CONTENT_SIGNS: Final = ("root:x:0:0", "root:*:", "root:!")  # /etc/passwd, /etc/shadow


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    method: str
    code: grpc.StatusCode
    details: str
    elapsed: float
    request: str  # a short text form, for the report

    def describe(self) -> str:
        return f"{self.method} -> {self.code.name} in {self.elapsed:.1f}s: {self.details[:160]!r}"


def summary(request: Message, limit: int = 300) -> str:
    text = text_format.MessageToString(request, as_one_line=True)
    return text if len(text) <= limit else text[:limit] + "…"


def marked(directory: Path) -> set[str]:
    """Entries of ``directory`` whose name carries the fuzzer's mark."""
    try:
        return {str(directory / n) for n in os.listdir(directory) if MARK in n}
    except OSError:
        return set()


def tree(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


@dataclass(slots=True)
class FuzzRun:
    """One berthd, its targets, and what the run has seen so far."""

    harness: FaultHarness
    canary: Path
    registry_host: str
    counts: dict[str, int] = field(default_factory=dict)
    before_marked: set[str] = field(default_factory=set)
    before_canary: set[str] = field(default_factory=set)
    broken: str = ""  # why berthd cannot be started any more
    _targets: Targets | None = None

    # -- set-up ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start berthd with its cwd in the canary, so relative paths land where we look."""
        for sub in ("mnt", "logs", "cwd"):
            (self.canary / sub).mkdir(parents=True, exist_ok=True)
        here = os.getcwd()
        os.chdir(self.canary / "cwd")
        try:
            self.harness.daemon.start()
        finally:
            os.chdir(here)
        self.before_marked = set().union(*(marked(d) for d in WATCHED))
        self.before_canary = tree(self.canary)

    def targets(self) -> Targets:
        """Live objects for the strategies; made again when a fuzzed call removed them."""
        h = self.harness
        assert not self.broken, self.broken
        if self._targets is not None and self._intact(self._targets):
            return self._targets
        self.clean_up(keep=set())
        image = h.call(
            "PullImage", api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=h.image))
        ).image_ref
        pod_id = h.run_pod(h.fresh_name("fuzz"))
        config = h.call("PodSandboxStatus", api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
        pod_config = h.pod_config(config.status.metadata.name)
        pod_config.metadata.CopyFrom(config.status.metadata)
        running = h.create(pod_id, "target", ["sleep", "1000"])
        h.start(running)
        created = tuple(h.create(pod_id, f"created{i}", ["sleep", "1000"]) for i in range(2))
        self._targets = Targets(
            pod_id=pod_id,
            pod_config=pod_config,
            container_id=running,
            created=created,
            image=h.image,
            image_id=image,
            canary=self.canary,
            registry_host=self.registry_host,
            cgroup_parent=h.cgroup_parent,
        )
        return self._targets

    def _intact(self, t: Targets) -> bool:
        try:
            states = {c: self.harness.status(c).state for c in (t.container_id, *t.created)}
            image = self.harness.call(
                "ImageStatus", api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=t.image))
            )
        except grpc.RpcError:
            return False
        created = all(states[c] == api_pb2.CONTAINER_CREATED for c in t.created)
        return created and states[t.container_id] == api_pb2.CONTAINER_RUNNING and image.image.id

    # -- calls -------------------------------------------------------------------------------

    def send(self, method: MethodDescriptor, request: Message) -> Outcome:
        client = self.harness.daemon.client
        stub: Any = (
            client.images if method.containing_service.name == "ImageService" else (client.runtime)
        )
        call = getattr(stub, method.name)
        started = time.monotonic()
        code, details = C.OK, ""
        try:
            if method.server_streaming:
                for _ in call(request, timeout=STREAM_WINDOW):
                    break
            else:
                call(request, timeout=CALL_DEADLINE)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        elapsed = time.monotonic() - started
        if TRACE:
            with open(TRACE, "a") as trace:
                trace.write(f"{elapsed:.2f} {code.name} {summary(request, 20000)}\n")
        if method.server_streaming and code == C.DEADLINE_EXCEEDED:
            code = C.OK  # an open stream is what a stream is
        return Outcome(
            method=method.name,
            code=code,
            details=details,
            elapsed=elapsed,
            request=summary(request),
        )

    # -- judging -----------------------------------------------------------------------------

    def judge(self, outcomes: Iterable[Outcome]) -> list[str]:
        found: dict[str, str] = {}
        for o in outcomes:
            problem = ""
            if o.code not in ALLOWED:
                problem = f"undocumented status {o.code.name}"
            elif o.code == C.DEADLINE_EXCEEDED and o.elapsed >= CALL_DEADLINE - 0.5:
                problem = f"no answer within {CALL_DEADLINE:g}s"
            elif SECRET in o.details:
                problem = "a credential in the error text"
            elif any(sign in o.details for sign in FILE_CONTENT_SIGNS):
                problem = "host file content in the error text"
            key = f"{problem}: {o.details[:60]}"
            if problem and key not in found:
                found[key] = f"{o.describe()}\n    for {o.request}"
        return list(found.values()) + self.health()

    def health(self) -> list[str]:
        """berthd is alive and answers Version; if not, say why and start it again."""
        daemon = self.harness.daemon
        if daemon.proc is not None and daemon.proc.poll() is None:
            try:
                daemon.client.runtime.Version(api_pb2.VersionRequest(), timeout=5)
                return []
            except grpc.RpcError as exc:
                problem = f"berthd does not answer Version: {exc.code().name}"
        else:
            code = daemon.proc.returncode if daemon.proc else None
            problem = f"berthd died (exit {code}):\n{daemon.logs()[-3000:]}"
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        daemon.proc = None
        self._targets = None
        try:
            self.start()
        except (RuntimeError, TimeoutError) as exc:
            self.broken = f"berthd cannot start again: {str(exc)[-2000:]}"
            return [problem, self.broken]
        return [problem]

    # -- clean-up and traces -------------------------------------------------------------------

    def _remove_pod(self, pod_id: str, attempts: int = 3) -> None:
        """RemovePodSandbox, retried as the kubelet retries it: with hundreds of fuzzed pods on
        one bridge a CNI DEL can outlast the harness's short CNI timeout (DEADLINE_EXCEEDED),
        and the next call finishes the removal."""
        request = api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
        for attempt in range(attempts):
            try:
                self.harness.call("RemovePodSandbox", request)
                return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED or attempt == attempts - 1:
                    raise

    def clean_up(self, keep: set[str] | None = None) -> None:
        """Remove whatever the fuzzer made: pods, containers and images not among the targets."""
        h = self.harness
        t = self._targets
        keep = (
            keep if keep is not None else ({t.pod_id, t.container_id, *t.created} if t else set())
        )
        for pod in h.call("ListPodSandbox", api_pb2.ListPodSandboxRequest()).items:
            if pod.id not in keep:
                self._remove_pod(pod.id)
        for ctr in h.call("ListContainers", api_pb2.ListContainersRequest()).containers:
            if ctr.id not in keep:
                h.call("RemoveContainer", api_pb2.RemoveContainerRequest(container_id=ctr.id))
        for image in h.call("ListImages", api_pb2.ListImagesRequest()).images:
            if h.image not in image.repo_tags:
                h.call(
                    "RemoveImage",
                    api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=image.id)),
                )

    def traces(self) -> list[str]:
        """What the run left on the host outside berthd's own dirs; removed once reported."""
        found = []
        new = set().union(*(marked(d) for d in WATCHED)) - self.before_marked
        for path in sorted(new):
            found.append(f"created on the host: {path}")
            _remove(Path(path))
        allowed = ("mnt", "logs")
        for entry in sorted(tree(self.canary) - self.before_canary):
            if entry.split("/")[0] not in allowed:
                found.append(f"written outside berthd's dirs: {self.canary / entry}")
        for upper in marked(self.canary.parent):
            found.append(f"written next to the canary: {upper}")
            _remove(Path(upper))
        return found

    def secrets_on_disk(self) -> list[str]:
        """Credentials of fuzzed pulls found in berthd's log, root or state."""
        daemon = self.harness.daemon
        found = []
        if SECRET in daemon.logs():
            found.append(f"a credential is in berthd's log {daemon.log_path}")
        for base in (daemon.root, daemon.state):
            for path in base.rglob("*"):
                if path.is_file() and not path.is_socket() and _contains(path, SECRET.encode()):
                    found.append(f"a credential is stored in clear in {path}")
        return found


def _contains(path: Path, needle: bytes) -> bool:
    try:
        with path.open("rb") as f:
            return needle in f.read(64 << 20)
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)

"""One conformance run's resources and their teardown, in the order that leaves nothing behind.

    with Session.open(log_dir) as session:
        session.start_registry(catalog)
        runtime = session.start("berth")
        ...
    # here: pods drained, daemons stopped, registry stopped, every descendant process ended,
    # mounts under the work dir detached, the CNI bridge deleted, the work dir removed

The teardown runs with Ctrl-C and SIGTERM ignored, so a second interrupt cannot cut it short.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from e2e.critest_support import mounts, procs, publish
from e2e.critest_support.berth import start_berth
from e2e.critest_support.containerd import start_containerd
from e2e.critest_support.network import CniNetwork, create_network, delete_bridge
from e2e.critest_support.runtimes import RuntimeUnderTest, drain
from e2e.images.catalog import Published
from tests.support.registry import RegistryServer

RUNTIMES = ("berth", "containerd")


@dataclass(slots=True, kw_only=True)
class Session:
    workdir: Path
    log_dir: Path
    stamp: str
    net: CniNetwork
    registry: RegistryServer | None = None
    reaper: procs.OrphanReaper = field(default_factory=procs.OrphanReaper)
    running: list[RuntimeUnderTest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def open(cls, log_dir: Path, stamp: str) -> Iterator[Session]:
        procs.become_subreaper()
        workdir = Path(tempfile.mkdtemp(prefix="berth-critest-"))
        workdir.chmod(0o711)  # the user-namespace specs' pods' root must reach the state dir
        session = cls(workdir=workdir, log_dir=log_dir, stamp=stamp, net=create_network(workdir))
        session.reaper.start()
        try:
            yield session
        finally:
            with procs.uninterruptible():
                session.teardown()

    def start_registry(self, catalog: Iterable[Published]) -> str:
        with self.reaper.spawning() as keep:
            self.registry = publish.serve(catalog, self.workdir / "registry")
            keep(self.registry.process.pid)
        return self.registry.host

    def start(self, name: str) -> RuntimeUnderTest:
        assert self.registry is not None, "start_registry first"
        workdir = self.workdir / name
        with self.reaper.spawning() as keep:
            if name == "berth":
                runtime: RuntimeUnderTest = start_berth(workdir, self.net, self.registry.host)
            else:
                runtime = start_containerd(workdir, self.net, self.registry.host)
            keep(runtime.pid)
        self.running.append(runtime)
        return runtime

    def daemon_log(self, runtime: RuntimeUnderTest) -> Path:
        return self.log_dir / f"critest-{self.stamp}-{runtime.name}-daemon.log"

    def finish(self, runtime: RuntimeUnderTest) -> None:
        """Remove what critest left, stop the daemon, keep its log beside critest's."""
        if left := drain(runtime.endpoint):
            self.notes.append(f"{runtime.name}: removed {left} pods/containers critest left")
        runtime.stop()
        self.running.remove(runtime)
        if runtime.log_path.exists():
            shutil.copyfile(runtime.log_path, self.daemon_log(runtime))

    def teardown(self) -> None:
        self.reaper.stop()
        for runtime in list(self.running):
            with contextlib.suppress(Exception):
                self.finish(runtime)
        if self.registry is not None:
            self.registry.stop()
        if ended := procs.end_descendants():
            self.notes.append(f"ended {len(ended)} leftover processes: {ended}")
        if unmounted := mounts.unmount_under([self.workdir]):
            self.notes.append(f"unmounted {len(unmounted)} leftover mounts")
        delete_bridge(self.net)
        shutil.rmtree(self.workdir, ignore_errors=True)

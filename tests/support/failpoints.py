"""Failpoints for berthd's dependencies: wrappers for the OCI runtime and CNI plugins that fail,
hang or crash on a chosen call (the idea of containerd's failpoint binaries).

    points = Failpoints(tmp / "fp")
    settings = {
        "runtimes": {"runc": {"path": str(points.runc_wrapper())}},
        "cni": {"conf_dir": ..., "plugin_dirs": [str(points.cni_dir()), "/usr/lib/cni"]},
    }
    ...                                            # start berthd with these settings
    points.arm(Fault(command="create", action="fail", message="no cgroups for you"))
    ...                                            # the next `runc create` fails
    assert points.fired("create")

The wrappers are generated at test time (`python3 -IS`, standard library only; the logic is in
`tests.support.failpoint_exec`) and read the plan on every call, so one berthd serves many
scenarios: `arm` replaces the plan and resets the call counters, `disarm` clears it. Unarmed,
a wrapper execs the real binary with the same argv, environment and descriptors. Every call is
journalled (`calls`), so a test can prove its fault really fired.

Commands are runc subcommands (``create``, ``start``, ``kill``, ``delete``, ``exec``…) or CNI
verbs (``ADD``, ``DEL``, ``CHECK``, ``STATUS``); `Fault.plugin` narrows a CNI fault to one
plugin type. The plan, counters and journal live beside the wrapper directories, never in a
CNI plugin dir (berthd watches those for changes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from tests.support import failpoint_exec

Action = Literal["fail", "hang", "crash", "crash_after"]
PYTHON: Final = "/usr/bin/python3"
REAL_RUNC: Final = Path("/usr/sbin/runc")
REAL_CNI_DIR: Final = Path("/usr/lib/cni")
_SUPPORT_DIR: Final = str(Path(failpoint_exec.__file__).resolve().parent)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """What to do to calls ``nth`` … ``nth + times - 1`` of ``command`` (``times=0``: all from
    ``nth`` on). Counts are per plugin and command, from the last `arm`."""

    command: str
    action: Action
    plugin: str = ""  # CNI plugin type ("bridge"); "" = every wrapped binary
    nth: int = 1
    times: int = 1
    message: str = "injected failure"
    seconds: float = 3600.0  # how long `hang` sleeps


@dataclass(frozen=True, slots=True, kw_only=True)
class Guard:
    """Refuse runc bundles that would touch the host outside what a test allows."""

    mount_sources: tuple[str, ...] = ()  # allowed bind-mount source prefixes ("" = any)


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """One journalled call of a wrapper."""

    pid: int
    kind: str  # "runc" or "cni"
    plugin: str
    command: str
    count: int
    action: str  # "" when the call went to the real binary
    message: str
    args: tuple[str, ...]
    container_id: str  # CNI_CONTAINERID (CNI calls)
    time: float
    seconds: float = 0.0

    @property
    def fired(self) -> bool:
        return bool(self.action)


@dataclass(slots=True)
class Failpoints:
    """Wrapper binaries and their plan under ``base``."""

    base: Path
    _guard: Guard | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.disarm()

    def runc_wrapper(self, real: Path = REAL_RUNC) -> Path:
        """An executable standing in for ``real`` (named like it: berth names it in errors)."""
        directory = self.base / "runtime"
        directory.mkdir(exist_ok=True)
        return self._write(directory / real.name, "runc", real)

    def cni_dir(
        self,
        plugins: Sequence[str] = ("bridge", "portmap", "host-local"),
        real_dir: Path = REAL_CNI_DIR,
    ) -> Path:
        """A plugin dir with wrappers for ``plugins``; list it before ``real_dir``."""
        directory = self.base / "cni-bin"
        directory.mkdir(exist_ok=True)
        for name in plugins:
            self._write(directory / name, "cni", real_dir / name)
        return directory

    def _write(self, path: Path, kind: str, real: Path) -> Path:
        settings = {"kind": kind, "real": str(real), "base": str(self.base)}
        path.write_text(
            f"#!{PYTHON} -IS\n"
            "import sys\n"
            f"sys.path.insert(0, {_SUPPORT_DIR!r})\n"
            "from failpoint_exec import main\n"
            f"main({json.dumps(settings)})\n"
        )
        path.chmod(0o755)
        return path

    def arm(self, *faults: Fault, guard: Guard | None = None) -> None:
        """Replace the plan with ``faults`` (and the guard, if given); restart counting and
        the journal."""
        if guard is not None:
            self._guard = guard
        plan: dict[str, Any] = {"faults": [asdict(f) for f in faults]}
        if self._guard is not None:
            plan["guard"] = {"mount_sources": list(self._guard.mount_sources)}
        with failpoint_exec.locked(self.base / "plan.lock"):
            failpoint_exec.write_json(self.base / "counters.json", {})
            failpoint_exec.write_json(self.base / "plan.json", plan)
            (self.base / "journal.jsonl").write_text("")

    def disarm(self) -> None:
        """No faults from now on (a guard stays)."""
        self.arm()

    def calls(self, command: str | None = None) -> list[Call]:
        """Every journalled call (of ``command``), oldest first."""
        path = self.base / "journal.jsonl"
        if not path.exists():
            return []
        calls = []
        for line in path.read_text().splitlines():
            raw = json.loads(line)
            raw["args"] = tuple(raw["args"])
            calls.append(Call(**raw))
        return [c for c in calls if command is None or c.command == command]

    def fired(self, command: str | None = None) -> list[Call]:
        """The calls a fault (or the guard) acted on."""
        return [c for c in self.calls(command) if c.fired]

    def guarded(self) -> list[Call]:
        return [c for c in self.calls("create") if c.action == "guard"]

    def journal_size(self) -> int:
        path = self.base / "journal.jsonl"
        return os.path.getsize(path) if path.exists() else 0

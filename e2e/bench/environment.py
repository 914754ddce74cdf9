"""Set up a run — work dir, registry, images, runtimes — registering how to undo each step.

Teardown order (the reverse of set-up): per runtime remove its pods over CRI, stop the
daemon by its pid, sweep what it left (runc containers, shims, mounts, its bridge); stop the
registry; copy the daemons' logs into the output dir; remove the runtimes' cgroup subtrees in
every hierarchy; unmount anything left below the work dir; remove the work dir; compare
iptables with the state before the run (noted, not restored: other users may change it).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from e2e.bench import cleanup, images
from e2e.bench.berth import BerthRuntime
from e2e.bench.containerd import ContainerdRuntime
from e2e.bench.external import ExternalRuntime, parse_endpoint
from e2e.bench.options import Options
from e2e.bench.records import Results
from tests.support.registry import RegistryServer, start_registry

Say = Callable[[str], None]
ManagedRuntime = BerthRuntime | ContainerdRuntime | ExternalRuntime


@dataclass(frozen=True, slots=True, kw_only=True)
class Environment:
    workdir: Path
    registry: RegistryServer
    images: images.BenchImages
    runtimes: dict[str, ManagedRuntime]


def iptables_rules() -> set[str]:
    """Every rule line of the filter and nat tables (counters stripped)."""
    rules: set[str] = set()
    for table in ("filter", "nat"):
        out = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True)
        rules.update(f"{table}: {line}" for line in out.stdout.splitlines())
    return rules


def setup(options: Options, teardown: cleanup.Teardown, results: Results, out: Path,
          say: Say) -> Environment:  # fmt: skip
    token = secrets.token_hex(3)
    # Short and under /run: unix socket paths are limited to 108 bytes.
    workdir = Path(tempfile.mkdtemp(prefix=f"bb-{token}-", dir="/run"))
    before = iptables_rules()
    teardown.add("compare iptables", lambda: _compare_iptables(before, results))
    teardown.add("remove work dir", lambda: shutil.rmtree(workdir, ignore_errors=True))
    teardown.add("unmount leftovers", lambda: _note_all(results, cleanup.unmount_under(workdir)))
    parents = {name: f"/bench-{token}-{name}" for name in options.runtimes}
    teardown.add("remove cgroups", lambda: _note_all(results, _remove_cgroups(parents.values())))
    say(f"work dir {workdir}; starting the registry and pushing images")
    registry = start_registry(workdir / "registry")
    say(f"registry at {registry.url}")
    teardown.add("stop registry", registry.stop)
    bench_images = images.build_and_push(
        registry, layers=options.big_layers, layer_mb=options.big_layer_mb
    )
    runtimes: dict[str, ManagedRuntime] = {}
    given = {spec.name: spec for spec in map(parse_endpoint, options.endpoints)}
    for name in options.runtimes:
        runtime: ManagedRuntime = (
            ExternalRuntime(given[name], cgroup_parent=parents[name])
            if name in given
            else _make(name, workdir / name[:4], registry.host, bench_images, parents[name])
        )
        teardown.add(f"copy {name} log", partial(_copy_log, runtime, out))
        _register(teardown, runtime, results)
        say(f"starting {name}")
        runtime.start()
        runtimes[name] = runtime
    return Environment(workdir=workdir, registry=registry, images=bench_images,
                       runtimes=runtimes)  # fmt: skip


def _make(
    name: str, base: Path, host: str, imgs: images.BenchImages, parent: str
) -> ManagedRuntime:
    if name == "berth":
        return BerthRuntime(base, registry_host=host, cgroup_parent=parent)
    if name == "containerd":
        return ContainerdRuntime(base, registry_host=host, sandbox_image=imgs.pause,
                                 cgroup_parent=parent)  # fmt: skip
    raise SystemExit(f"unknown runtime {name!r} (berth, containerd)")


def _register(teardown: cleanup.Teardown, runtime: ManagedRuntime, results: Results) -> None:
    name = runtime.name
    teardown.add(f"sweep {name}", lambda: _note_all(results, runtime.sweep(), f"{name} left"))
    teardown.add(f"stop {name}", runtime.stop)
    teardown.add(f"remove {name} pods", runtime.remove_all_pods)


def _note_all(results: Results, found: list[str], prefix: str = "cleanup") -> None:
    for item in found:
        results.note(f"{prefix}: {item}")


def _remove_cgroups(parents: Iterable[str]) -> list[str]:
    failed: list[str] = []
    for directory in cleanup.read_own_cgroup_dirs():
        for parent in parents:
            failed += cleanup.remove_cgroup_tree(directory / parent.lstrip("/"))
    return failed


def _copy_log(runtime: ManagedRuntime, out: Path) -> None:
    log = runtime.log_path()
    if log is not None and log.exists():
        (out / "logs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, out / "logs" / f"{runtime.name}.log")


def _compare_iptables(before: set[str], results: Results) -> None:
    after = iptables_rules()
    for line in sorted(after - before):
        results.note(f"iptables rule added during the run (left in place): {line}")
    for line in sorted(before - after):
        results.note(f"iptables rule gone during the run: {line}")

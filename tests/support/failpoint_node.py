"""What berthd holds on the node, and whether it agrees with what berthd says exists.

`Node.inspect()` reads everything a pod or a container can leave behind — mounts under the
root and state dirs, namespace pins, pod files, CNI cache entries, veths on the test bridge,
host-local IPAM leases, shim state dirs and live shim processes, runc's state, container
cgroups, snapshots, blobs and partial downloads — and `problems()` compares that with the
objects the CRI lists (`StoreView`). Anything on the node that no listed object accounts for
is a leak; a listed object missing what it needs (a running container without a live shim, a
ready pod without its namespaces) is a loss. Call it when no request is in flight.

Everything here is read-only. The images' own tables (`images/images.db`) are read to know
which layers and blobs images still use; that is the one white-box look.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cri.api.v1 import api_pb2
from tests.support import cgroup_view as cg

ROOTFS_PREFIX: Final = "rootfs/"
EXTRACT_PREFIX: Final = "extract/"
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
NETNS_KINDS: Final = ("net", "ipc", "uts")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreView:
    """What the CRI lists: pods and containers by id with their state, image ids."""

    pods: Mapping[str, int]
    containers: Mapping[str, int]
    images: frozenset[str]


def store_view(client: Any, timeout: float = 10.0) -> StoreView:
    """ListPodSandbox, ListContainers and ListImages of a berthd (a `CriClient`)."""
    pods = client.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=timeout).items
    ctrs = client.runtime.ListContainers(
        api_pb2.ListContainersRequest(), timeout=timeout
    ).containers
    images = client.images.ListImages(api_pb2.ListImagesRequest(), timeout=timeout).images
    return StoreView(
        pods={p.id: p.state for p in pods},
        containers={c.id: c.state for c in ctrs},
        images=frozenset(i.id for i in images),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeState:
    mounts: tuple[str, ...]
    pins: Mapping[str, frozenset[str]]  # pod id -> pinned namespace kinds
    pod_dirs: frozenset[str]
    cni_cache: frozenset[str]
    cni_stray: frozenset[str]  # files in the CNI cache dir that are no cache entry
    container_dirs: frozenset[str]
    shim_dirs: Mapping[str, int | None]  # container id -> pid in shim.pid (alive) or None
    shim_processes: frozenset[int]  # live shim processes of this state dir (template excluded)
    runc_state: frozenset[str]
    veths: frozenset[str]
    leases: Mapping[str, str]  # ip -> owning sandbox id
    cgroups: frozenset[str]  # leaf names under the cgroup parents
    processes: Mapping[str, tuple[str, ...]]  # container id -> command lines in its cgroup
    snapshots: Mapping[str, tuple[str, str]]  # key -> (kind, parent key)
    snapshot_ids: frozenset[str]  # ids in snapshots.db
    snapshot_dirs: frozenset[str]  # entries of <root>/snapshots
    image_chains: frozenset[str]
    image_blobs: frozenset[str]
    blobs: frozenset[str]
    ingests: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """Where one berthd keeps its things; `bridge`/`ipam_dir` of the CNI network it uses;
    `cgroup_parents`: the pods' cgroup parents (give pods one of their own so other tests'
    cgroups never count)."""

    root: Path
    state: Path
    bridge: str = ""
    ipam_dir: Path | None = None
    runtime_root: Path | None = None  # runc --root; default <state>/runtimes/runc
    cgroup_parents: tuple[str, ...] = ()
    ignore_leases: frozenset[str] = field(default_factory=frozenset)

    def inspect(self) -> NodeState:
        snapshots, snapshot_ids = _snapshot_rows(self.root / "snapshots.db")
        chains, image_blobs = _image_rows(self.root / "images" / "images.db")
        return NodeState(
            mounts=tuple(mounts_under(self.root, self.state)),
            pins=_pins(self.state / "netns"),
            pod_dirs=_names(self.state / "pods"),
            cni_cache=frozenset(
                n.removesuffix(".json") for n in _names(self.state / "cni") if _cache_entry(n)
            ),
            cni_stray=frozenset(n for n in _names(self.state / "cni") if not _cache_entry(n)),
            container_dirs=_names(self.state / "containers"),
            shim_dirs=_shim_dirs(self.state / "shims"),
            shim_processes=frozenset(shim_processes(self.state)),
            runc_state=_names(self.runtime_root or self.state / "runtimes" / "runc"),
            veths=frozenset(bridge_ports(self.bridge)) if self.bridge else frozenset(),
            leases=self._leases(),
            cgroups=frozenset(container_cgroups(self.cgroup_parents)),
            processes=container_processes(self.cgroup_parents),
            snapshots=snapshots,
            snapshot_ids=snapshot_ids,
            snapshot_dirs=_names(self.root / "snapshots"),
            image_chains=chains,
            image_blobs=image_blobs,
            blobs=frozenset(
                "sha256:" + n for n in _names(self.root / "content" / "blobs" / "sha256")
            ),
            ingests=_names(self.root / "content" / "ingest"),
        )

    def _leases(self) -> dict[str, str]:
        if self.ipam_dir is None:
            return {}
        owners = ipam_leases(self.ipam_dir)
        return {ip: owner for ip, owner in owners.items() if owner not in self.ignore_leases}


# -- readers ---------------------------------------------------------------------------------


def mounts_under(*dirs: Path) -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    prefixes = [str(d).rstrip("/") for d in dirs]
    return [p for p in points if any(p == d or p.startswith(d + "/") for d in prefixes)]


def _names(directory: Path) -> frozenset[str]:
    try:
        return frozenset(os.listdir(directory))
    except FileNotFoundError:
        return frozenset()


def _subdirs(directory: Path) -> frozenset[str]:
    try:
        return frozenset(e.name for e in os.scandir(directory) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return frozenset()


def _cache_entry(name: str) -> bool:
    return name.endswith(".json") and not name.startswith(".")


def _pins(netns_dir: Path) -> dict[str, frozenset[str]]:
    mounted = set(mounts_under(netns_dir))
    return {
        pod: frozenset(k for k in NETNS_KINDS if str(netns_dir / pod / k) in mounted)
        for pod in _names(netns_dir)
    }


def pid_alive(pid: int) -> bool:
    """Running (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _shim_dirs(shims: Path) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for cid in _names(shims):
        try:
            pid: int | None = int((shims / cid / "shim.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        out[cid] = pid if pid is not None and pid_alive(pid) else None
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def shim_processes(state: Path) -> list[int]:
    """Live shims started for ``state``: forked from its template (whose argv they keep) or
    exec'd with a state dir inside it. The template itself (a child of berthd) is left out."""
    template = str(state / "shim-template")
    shims = str(state / "shims") + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        argv = _cmdline(pid)
        if "-c" not in argv or not any("shim.main" in a for a in argv):
            continue
        if template in argv and "template" in argv and _is_template(pid, argv):
            continue
        if (template in argv or any(a.startswith(shims) for a in argv)) and pid_alive(pid):
            found.append(pid)
    return found


def _is_template(pid: int, argv: list[str]) -> bool:
    """The template is the one whose --parent is its parent (its berthd)."""
    try:
        parent = int(argv[argv.index("--parent") + 1])
    except (ValueError, IndexError):
        return False
    return _ppid(pid) == parent


def bridge_ports(bridge: str) -> list[str]:
    out = subprocess.run(
        ["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True
    ).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def ipam_leases(ipam_dir: Path) -> dict[str, str]:
    """host-local leases: files named by IP, first line the container (sandbox) id."""
    leases: dict[str, str] = {}
    if not ipam_dir.is_dir():
        return leases
    for path in ipam_dir.rglob("*"):
        if path.is_file() and (path.name.count(".") == 3 or ":" in path.name):
            lines = path.read_text(errors="replace").splitlines()
            leases[path.name] = lines[0].strip() if lines else ""
    return leases


def cgroup_bases() -> list[Path]:
    """This process's cgroup in every mounted hierarchy (where runc puts relative paths)."""
    bases = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        name = controllers.removeprefix("name=") if controllers else "unified"
        mount = CGROUP_ROOT / name
        if controllers and not mount.is_dir():
            mount = CGROUP_ROOT / controllers.split(",")[0]
        if mount.is_dir():
            bases.append(mount / path.lstrip("/"))
    return bases


def container_cgroups(parents: Iterable[str]) -> set[str]:
    """Ids of the containers with a cgroup below the parents (either cgroup driver)."""
    leaves: set[str] = set()
    for parent in parents:
        for top in cg.parent_dirs(parent, cgroup_bases()):
            leaves |= {cg.container_id_of(leaf) for leaf in _subdirs(top)}
    return leaves


def container_processes(parents: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Command lines of the processes in each container cgroup (any hierarchy)."""
    pids: dict[str, set[int]] = {}
    for parent in parents:
        for top in cg.parent_dirs(parent, cgroup_bases()):
            for leaf in _subdirs(top):
                try:
                    found = {int(p) for p in (top / leaf / "cgroup.procs").read_text().split()}
                except OSError:
                    continue
                pids.setdefault(cg.container_id_of(leaf), set()).update(found)
    return {
        cid: tuple(" ".join(_cmdline(p)).strip() for p in sorted(found) if pid_alive(p))
        for cid, found in pids.items()
        if any(pid_alive(p) for p in found)
    }


def remove_cgroup_parents(parents: Iterable[str]) -> None:
    """rmdir the pods' cgroup parents runc made, and any empty cgroup left below them (a leak
    the tests report; it must not outlive them), deepest first. systemd driver: stop the slice."""
    if cg.SYSTEMD:
        cg.remove_pod_parents(parents)
        return
    for base in cgroup_bases():
        for parent in parents:
            parts = [p for p in parent.split("/") if p]
            top = base / "/".join(parts)
            if top.is_dir():
                for sub in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                    if sub.is_dir():
                        with contextlib.suppress(OSError):
                            sub.rmdir()
            for depth in range(len(parts), 0, -1):
                try:
                    (base / "/".join(parts[:depth])).rmdir()
                except OSError:
                    break


def _sqlite_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return db.execute(sql).fetchall()


def _snapshot_rows(path: Path) -> tuple[dict[str, tuple[str, str]], frozenset[str]]:
    rows = _sqlite_rows(path, "SELECT id, key, kind, parent_id FROM snapshots")
    keys = {sid: key for sid, key, _, _ in rows}
    snapshots = {key: (kind, keys.get(parent, "")) for _, key, kind, parent in rows}
    return snapshots, frozenset(str(sid) for sid in keys)


def _image_rows(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    rows = _sqlite_rows(path, "SELECT chain_id, blobs FROM images")
    return (
        frozenset(r[0] for r in rows if r[0]),
        frozenset(b for r in rows for b in json.loads(r[1])),
    )


# -- the comparison ---------------------------------------------------------------------------


def problems(
    node: Node,
    seen: NodeState,
    view: StoreView,
    *,
    allowed_blobs: Iterable[str] = (),
    baseline: NodeState | None = None,
) -> list[str]:
    """Every disagreement between the node (``seen``) and the listed objects (``view``).

    ``allowed_blobs``: unreferenced blobs that may stay (what an interrupted pull fetched is
    kept for its retry). ``baseline``: veths, leases and cgroups that were there before.
    """
    found: list[str] = []
    found += _pod_problems(node, seen, view)
    found += _network_problems(seen, view, baseline)
    found += _container_problems(seen, view, baseline)
    found += _mount_problems(node, seen, view)
    found += _image_problems(seen, view, set(allowed_blobs))
    return found


def _pod_problems(node: Node, seen: NodeState, view: StoreView) -> list[str]:
    found = []
    pods = set(view.pods)
    ready = {p for p, s in view.pods.items() if s == api_pb2.SANDBOX_READY}
    for pod in set(seen.pins) - pods:
        found.append(f"namespace pins of unknown pod {pod}: {sorted(seen.pins[pod])}")
    for pod in ready:
        if not seen.pins.get(pod):
            found.append(f"ready pod {pod} has no pinned namespaces")
    for pod in seen.pod_dirs - pods:
        found.append(f"pod files of unknown pod {pod} in {node.state / 'pods'}")
    for pod in seen.cni_cache - pods:
        found.append(f"CNI cache entry of unknown pod {pod}")
    for name in seen.cni_stray:
        found.append(f"stray file in the CNI cache dir (a write a crash cut short?): {name}")
    for pod in ready - seen.cni_cache:
        found.append(f"ready pod {pod} has no CNI cache entry (its network cannot be undone)")
    return found


def _network_problems(seen: NodeState, view: StoreView, baseline: NodeState | None) -> list[str]:
    found = []
    old_leases = set(baseline.leases) if baseline else set()
    ready = {p for p, s in view.pods.items() if s == api_pb2.SANDBOX_READY}
    owners: dict[str, list[str]] = {}
    for ip, owner in seen.leases.items():
        if ip not in old_leases:
            owners.setdefault(owner, []).append(ip)
    # A stopped (NOTREADY) pod may still hold its network when its CNI DEL failed or a crash
    # cut the stop short: the next StopPodSandbox, or recovery, releases it.
    listed = set(view.pods)
    for owner, ips in owners.items():
        if owner not in listed:
            found.append(f"IPAM lease {ips} held by {owner or '?'}, not a listed pod")
        elif len(ips) > 1:
            found.append(f"pod {owner} holds several leases {ips}")
    if seen.leases or old_leases:  # an IPAM network: every ready pod holds one address
        for pod in sorted(ready - set(owners)):
            found.append(f"ready pod {pod} holds no IPAM lease: its network is gone")
    veths = seen.veths - (baseline.veths if baseline else frozenset())
    if not len(ready) <= len(veths) <= len(listed):
        found.append(
            f"{len(veths)} veths on the bridge for {len(ready)} ready and {len(listed)} listed "
            f"pods: {sorted(veths)}"
        )
    return found


def _container_problems(seen: NodeState, view: StoreView, baseline: NodeState | None) -> list[str]:
    found = []
    ctrs = set(view.containers)
    live = {c for c, s in view.containers.items() if s != api_pb2.CONTAINER_EXITED}
    for cid in seen.container_dirs - ctrs:
        found.append(f"bundle dir of unknown container {cid}")
    for cid in set(seen.shim_dirs) - ctrs:
        found.append(f"shim state dir of unknown container {cid}")
    for cid in live:
        if seen.shim_dirs.get(cid) is None:
            found.append(f"{_state(view, cid)} container {cid} has no live shim")
    known_pids = {pid for pid in seen.shim_dirs.values() if pid is not None}
    for pid in seen.shim_processes - known_pids:
        found.append(
            f"shim process {pid} belongs to no state dir ({' '.join(_cmdline(pid))[-80:]})"
        )
    for cid in seen.runc_state - ctrs:
        found.append(f"runc state of unknown container {cid}")
    old = baseline.cgroups if baseline else frozenset()
    for cid in seen.cgroups - ctrs - old:
        found.append(f"cgroup of unknown container {cid}")
    found += _process_problems(seen, view)
    return found


def _runc_init(command: str) -> bool:
    words = command.split()
    return len(words) >= 2 and words[0].endswith("runc") and words[1] == "init"


def _process_problems(seen: NodeState, view: StoreView) -> list[str]:
    """A CREATED container runs nothing but `runc init`; an EXITED one runs nothing at all."""
    found = []
    for cid, commands in seen.processes.items():
        state = view.containers.get(cid)
        if state == api_pb2.CONTAINER_CREATED and any(not _runc_init(c) for c in commands):
            found.append(f"CREATED container {cid} already runs {list(commands)}")
        elif state == api_pb2.CONTAINER_EXITED:
            found.append(f"EXITED container {cid} still runs {list(commands)}")
        elif state is None:
            found.append(f"processes of unknown container {cid} run: {list(commands)}")
    return found


def _state(view: StoreView, cid: str) -> str:
    return str(api_pb2.ContainerState.Name(view.containers[cid]))  # type: ignore[arg-type]


def _mount_problems(node: Node, seen: NodeState, view: StoreView) -> list[str]:
    owners = set(view.pods) | set(view.containers)
    found = []
    for point in seen.mounts:
        if point in (str(node.state / "netns"), str(node.root), str(node.state)):
            continue  # the private mount above the pins; a test's own fs as root or state
        relative = Path(point).relative_to(
            node.state if point.startswith(str(node.state)) else node.root
        )
        if not any(part in owners for part in relative.parts):
            found.append(f"mount {point} belongs to no listed pod or container")
    return found


def _image_problems(seen: NodeState, view: StoreView, allowed_blobs: set[str]) -> list[str]:
    found = []
    used = set(seen.image_chains)
    for kind, parent in seen.snapshots.values():
        if kind != "committed" and parent:
            used.add(parent)
    used = _with_ancestors(used, seen.snapshots)
    for key, (kind, _) in seen.snapshots.items():
        if key.startswith(ROOTFS_PREFIX) and key.removeprefix(ROOTFS_PREFIX) not in view.containers:
            found.append(f"rootfs snapshot of unknown container {key}")
        elif key.startswith(EXTRACT_PREFIX):
            found.append(f"unfinished unpack left behind: snapshot {key}")
        elif kind == "committed" and key not in used:
            found.append(f"layer snapshot {key} used by no image or container")
    for name in seen.snapshot_dirs - seen.snapshot_ids:
        found.append(f"snapshot directory {name} has no snapshot row")
    for name in seen.snapshot_ids - seen.snapshot_dirs:
        found.append(f"snapshot row {name} has no directory")
    for blob in seen.blobs - seen.image_blobs - allowed_blobs:
        found.append(f"blob {blob} belongs to no image")
    for hexpart in seen.ingests:
        if "sha256:" + hexpart not in allowed_blobs:
            found.append(f"partial download sha256:{hexpart} left behind")
    return found


def _with_ancestors(keys: set[str], snapshots: Mapping[str, tuple[str, str]]) -> set[str]:
    out = set()
    todo = list(keys)
    while todo:
        key = todo.pop()
        if key in out:
            continue
        out.add(key)
        parent = snapshots.get(key, ("", ""))[1]
        if parent:
            todo.append(parent)
    return out

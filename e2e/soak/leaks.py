"""After everything is removed: is the node as it was before the soak, and berthd too?

- `problems()` of `tests.support.failpoint_node` with an empty listing: no mounts, namespace
  pins, pod files, CNI cache entries, veths, IPAM leases, bundles, shim dirs or processes, runc
  state, container cgroups, rootfs snapshots or unreferenced blobs may remain;
- the node compared with its baseline field by field (taken after the image pull and one pod
  started and removed): the same snapshots, snapshot dirs, blobs and mounts, nothing else;
- berthd's own tables (``meta.db``): no sandbox or container rows;
- berthd's open file descriptors back to the baseline within ``fd_slack``;
- no shim process of this state dir alive (the shim template excepted).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import fields
from pathlib import Path
from typing import Any

from tests.support.failpoint_node import Node, NodeState, problems, shim_processes, store_view

SETTLE_S = 60.0  # shims exit and fds close a little after the last RemovePodSandbox answered


def store_rows(root: Path) -> dict[str, int]:
    """Rows of berthd's sandboxes and containers tables (read-only)."""
    path = root / "meta.db"
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return {
            table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("sandboxes", "containers")
        }


def differences(baseline: NodeState, now: NodeState) -> list[str]:
    """Each field of the node that is not as it was: what was added, what is missing."""
    found = []
    for f in fields(NodeState):
        before, after = getattr(baseline, f.name), getattr(now, f.name)
        if before == after:
            continue
        old, new = _keys(before), _keys(after)
        added, missing = sorted(new - old), sorted(old - new)
        if not added and not missing:
            found.append(f"{f.name} changed: {_short(before)} -> {_short(after)}")
            continue
        parts = []
        if added:
            parts.append(f"{len(added)} more ({', '.join(added[:5])})")
        if missing:
            parts.append(f"{len(missing)} missing ({', '.join(missing[:5])})")
        found.append(f"{f.name} differs from the baseline: {'; '.join(parts)}")
    return found


def _keys(value: Any) -> set[str]:
    if isinstance(value, Mapping):
        return {str(k) for k in value}
    return {str(v) for v in value}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 160 else text[:157] + "..."


def settle(ready: Callable[[], bool], timeout: float = SETTLE_S) -> float:
    """Wait until ``ready()``; the seconds it took (``timeout`` if it never was)."""
    began = time.monotonic()
    while not ready():
        if time.monotonic() - began > timeout:
            break
        time.sleep(0.5)
    return time.monotonic() - began


def leak_check(
    node: Node, baseline: NodeState, client: Any, fds_now: int, fds_baseline: int, fd_slack: int
) -> list[str]:
    found = []
    view = store_view(client)
    if view.pods or view.containers:
        found.append(f"berthd still lists {len(view.pods)} pods, {len(view.containers)} containers")
    now = node.inspect()
    found += problems(node, now, view, baseline=baseline)
    found += differences(baseline, now)
    rows = store_rows(node.root)
    if any(rows.values()):
        found.append(f"store rows left in meta.db: {rows}")
    shims = shim_processes(node.state)
    if shims:
        found.append(f"{len(shims)} shim processes still alive: {shims[:10]}")
    if fds_now > fds_baseline + fd_slack:
        found.append(
            f"berthd has {fds_now} open fds, {fds_now - fds_baseline} more than after set-up "
            f"({fds_baseline}; slack {fd_slack})"
        )
    return found

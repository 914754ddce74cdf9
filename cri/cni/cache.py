"""The per-sandbox CNI cache: what a pod's network was set up with, so DEL can undo it.

One file per sandbox, ``<cache_dir>/<sandbox id>.json``, written atomically (temp file, fsync,
rename). It is written *before* the first ADD (``result`` null) and again with the ADD result,
so a DEL after a crash half-way through ADD, after a config change or after a berthd restart
still runs the plugins and the configuration the pod was attached with (libcni keeps a
similar cache under /var/lib/cni/results).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from cri import errors
from cri.cni.config import ConfigInvalid, NetworkConfList, parse_conflist

log = structlog.get_logger(__name__)

CACHE_KIND = "berth.cni.cache/v1"
_CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheEntry:
    container_id: str
    network: NetworkConfList
    capability_args: Mapping[str, Any]
    cni_args: str
    netns: str = ""  # the pin the pod was attached in
    result: Mapping[str, Any] | None = None  # None while ADD has not finished


def _encode(entry: CacheEntry) -> bytes:
    return json.dumps(
        {
            "kind": CACHE_KIND,
            "containerId": entry.container_id,
            "config": entry.network.to_json(),
            "capabilityArgs": dict(entry.capability_args),
            "cniArgs": entry.cni_args,
            "netns": entry.netns,
            "result": None if entry.result is None else dict(entry.result),
        }
    ).encode()


def _decode(data: bytes) -> CacheEntry:
    obj = json.loads(data)
    if not isinstance(obj, dict) or obj.get("kind") != CACHE_KIND:
        raise ValueError("not a berth CNI cache entry")
    result = obj.get("result")
    capability_args = obj.get("capabilityArgs")
    if not (result is None or isinstance(result, dict)) or not isinstance(capability_args, dict):
        raise ValueError("malformed result or capabilityArgs")
    return CacheEntry(
        container_id=str(obj["containerId"]),
        network=parse_conflist(obj["config"]),
        capability_args=capability_args,
        cni_args=str(obj.get("cniArgs", "")),
        netns=str(obj.get("netns", "")),
        result=result,
    )


class ResultCache:
    """Cache entries in one directory; every method is blocking file I/O."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def remove_partial_writes(self) -> list[str]:
        """Delete temporary files a crash left mid-write (recovery calls this at start-up)."""
        if not self.directory.is_dir():
            return []
        stray = [p for p in self.directory.iterdir() if p.name.startswith(".")]
        for p in stray:
            p.unlink(missing_ok=True)
        return [p.name for p in stray]

    def path(self, container_id: str) -> Path:
        if not _CONTAINER_ID.fullmatch(container_id):
            raise errors.InvalidArgument(f"sandbox id {container_id!r} is not a valid CNI id")
        return self.directory / f"{container_id}.json"

    def write(self, entry: CacheEntry) -> None:
        path = self.path(entry.container_id)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(_encode(entry))
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read(self, container_id: str) -> CacheEntry | None:
        """The entry, or None if there is none or it cannot be read (logged)."""
        path = self.path(container_id)
        try:
            return _decode(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, ConfigInvalid) as exc:
            log.warning("cni cache entry unreadable", pod_id=container_id, error=str(exc))
            return None

    def remove(self, container_id: str) -> None:
        self.path(container_id).unlink(missing_ok=True)

    def ids(self) -> list[str]:
        """Sandbox ids with an entry (for restart recovery)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n[: -len(".json")] for n in names if n.endswith(".json"))

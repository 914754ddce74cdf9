"""CNI network configuration: loading conflists and choosing the one berth uses.

Like libcni and containerd: files ending in ``.conflist``, ``.conf`` or ``.json`` in the conf
dir, taken in file-name order; a single-plugin ``.conf``/``.json`` is wrapped into a list. The
first *valid* file wins: it parses, has a network name and a ``cniVersion`` (or a
``cniVersions`` list with a version berth speaks), at least one plugin, and every plugin's
``type`` is an executable in one of the plugin dirs. Invalid files are skipped, and the reasons
are kept for the Status message.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_EXTENSIONS = (".conflist", ".conf", ".json")
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
_NETWORK_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


class ConfigInvalid(ValueError):
    """A configuration file berth cannot use; the message says why."""


def version_tuple(version: str) -> tuple[int, int, int]:
    """ "1.0.0" → (1, 0, 0); raises ConfigInvalid for anything else."""
    match = _VERSION.fullmatch(version)
    if match is None:
        raise ConfigInvalid(f"cniVersion {version!r} is not a version")
    return (int(match[1]), int(match[2]), int(match[3]))


def version_at_least(version: str, minimum: str) -> bool:
    return version_tuple(version) >= version_tuple(minimum)


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginConf:
    """One plugin of a chain, as written in the file."""

    type: str
    raw: Mapping[str, Any]

    @property
    def capabilities(self) -> frozenset[str]:
        declared = self.raw.get("capabilities")
        if not isinstance(declared, Mapping):
            return frozenset()
        return frozenset(name for name, enabled in declared.items() if enabled is True)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfList:
    """A network: its name, the spec version berth speaks to it, and its plugin chain."""

    name: str
    cni_version: str
    plugins: tuple[PluginConf, ...]
    disable_check: bool = False
    source: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """The conflist as JSON, with the chosen version; what the cache keeps."""
        return {
            "name": self.name,
            "cniVersion": self.cni_version,
            "disableCheck": self.disable_check,
            "plugins": [dict(plugin.raw) for plugin in self.plugins],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """Outcome of scanning the conf dir: the network to use (or None) and why others lost."""

    network: NetworkConfList | None
    problems: tuple[str, ...]


def _choose_version(raw: Mapping[str, Any]) -> str:
    versions = raw.get("cniVersions")
    if isinstance(versions, list) and versions:
        known = [v for v in versions if isinstance(v, str) and v in SUPPORTED_VERSIONS]
        if not known:
            raise ConfigInvalid(f"none of cniVersions {versions} is supported")
        return max(known, key=version_tuple)
    version = raw.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise ConfigInvalid("no cniVersion")
    version_tuple(version)
    return version


def _plugin(raw: Any, index: int) -> PluginConf:
    if not isinstance(raw, Mapping):
        raise ConfigInvalid(f"plugin {index} is not an object")
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind or "/" in kind:
        raise ConfigInvalid(f"plugin {index} has no valid type")
    return PluginConf(type=kind, raw=dict(raw))


def parse_conflist(raw: Any, source: Path | None = None) -> NetworkConfList:
    """Build a network from a decoded conflist; raises ConfigInvalid."""
    if not isinstance(raw, Mapping):
        raise ConfigInvalid("not a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not _NETWORK_NAME.fullmatch(name):
        raise ConfigInvalid(f"invalid network name {name!r}")
    plugins = raw.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise ConfigInvalid("no plugins")
    return NetworkConfList(
        name=name,
        cni_version=_choose_version(raw),
        plugins=tuple(_plugin(plugin, i) for i, plugin in enumerate(plugins)),
        disable_check=raw.get("disableCheck") is True,
        source=source,
    )


def _wrap_single(raw: Any) -> Any:
    """A single-plugin .conf becomes a one-plugin list (a .conf holding a list stays one)."""
    if not isinstance(raw, Mapping) or "plugins" in raw:
        return raw
    wrapped = {key: raw[key] for key in ("name", "cniVersion", "disableCheck") if key in raw}
    wrapped["plugins"] = [dict(raw)]
    return wrapped


def load_file(path: Path) -> NetworkConfList:
    """Parse one config file; raises ConfigInvalid (also for unreadable files)."""
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigInvalid(f"cannot read: {exc}") from None
    if path.suffix != ".conflist":
        raw = _wrap_single(raw)
    return parse_conflist(raw, source=path)


def find_plugin(kind: str, plugin_dirs: Sequence[Path]) -> Path | None:
    """The first executable file named ``kind`` in ``plugin_dirs``."""
    for directory in plugin_dirs:
        candidate = directory / kind
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _check_plugins(network: NetworkConfList, plugin_dirs: Sequence[Path]) -> None:
    missing = [p.type for p in network.plugins if find_plugin(p.type, plugin_dirs) is None]
    if missing:
        dirs = ":".join(str(d) for d in plugin_dirs)
        raise ConfigInvalid(f"plugin binaries {missing} not found in {dirs}")


def config_files(conf_dir: Path) -> list[Path]:
    """Candidate files in ``conf_dir`` in file-name order (none if the dir is missing)."""
    try:
        names = sorted(
            entry.name
            for entry in os.scandir(conf_dir)
            if entry.name.endswith(CONFIG_EXTENSIONS) and entry.is_file()
        )
    except FileNotFoundError:
        return []
    return [conf_dir / name for name in names]


def select_network(conf_dir: Path, plugin_dirs: Sequence[Path]) -> Selection:
    """The first valid network in ``conf_dir`` and the problems of the files before it."""
    problems: list[str] = []
    for path in config_files(conf_dir):
        try:
            network = load_file(path)
            _check_plugins(network, plugin_dirs)
        except ConfigInvalid as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        return Selection(network=network, problems=tuple(problems))
    return Selection(network=None, problems=tuple(problems))


def fingerprint(conf_dir: Path, plugin_dirs: Sequence[Path]) -> tuple[object, ...]:
    """Changes whenever a config file or a plugin dir's entries change; a few stat calls.

    Per-file stats catch in-place edits (which leave the dir's mtime alone); a plugin dir's
    mtime catches a binary installed after its config.
    """
    files: list[object] = []
    try:
        entries = [e for e in os.scandir(conf_dir) if e.name.endswith(CONFIG_EXTENSIONS)]
    except FileNotFoundError:
        entries = []
    for entry in entries:
        try:
            st = entry.stat()
        except FileNotFoundError:  # a dangling symlink, or removed since the scan
            continue
        files.append((entry.name, st.st_ino, st.st_size, st.st_mtime_ns))
    dirs: list[object] = []
    for directory in plugin_dirs:
        try:
            dirs.append(directory.stat().st_mtime_ns)
        except FileNotFoundError:
            dirs.append(None)
    return (tuple(sorted(files, key=repr)), tuple(dirs))

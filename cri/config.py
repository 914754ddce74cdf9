"""berthd configuration: a TOML file, overridable by flags, validated before anything is created.

Every key has a default (``Config()`` is the default configuration); the README lists them
all. Loading never touches the disk beyond reading the file: an unknown key, a wrong type or an
impossible value raises :class:`ConfigError` naming the key, so berthd exits before it creates
a directory, a socket or a process.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from cri import cgroups

DEFAULT_CONFIG_PATH = Path("/etc/berth/config.toml")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeHandler:
    """An OCI runtime selectable by a RuntimeClass handler name."""

    path: str
    root: str = ""  # runtime state dir (--root); "" means <state>/runtimes/<name>
    options: tuple[str, ...] = ()  # extra global flags passed before the command
    user_namespaces: bool = True  # pods of this handler may have user namespaces (if the node can)


@dataclass(frozen=True, slots=True, kw_only=True)
class CniConfig:
    conf_dir: str = "/etc/cni/net.d"
    plugin_dirs: tuple[str, ...] = ("/opt/cni/bin", "/usr/lib/cni")
    timeout: float = 60.0  # seconds per plugin invocation


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryConfig:
    config_path: str = "/etc/berth/certs.d"  # containerd-style <host>/hosts.toml tree
    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    insecure: tuple[str, ...] = ()  # hosts reached over plain HTTP
    credentials_file: str = ""  # docker config.json style {"auths": {...}}
    max_concurrent_downloads: int = 3
    stall_timeout: float = 300.0  # seconds without progress before a pull is cancelled


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    root: str = "/var/lib/berth"
    state: str = "/run/berth"
    socket: str = "/run/berth/berth.sock"
    log_level: str = "info"
    log_format: str = "json"
    metrics_address: str = "127.0.0.1:9180"  # "" disables the endpoint
    streaming_address: str = "127.0.0.1:0"  # port 0 picks a free port
    cgroup_driver: str = "cgroupfs"
    cgroup_root: str = "/"  # "self": berthd's own cgroup in every hierarchy
    default_runtime: str = "runc"
    runtimes: Mapping[str, RuntimeHandler] = field(
        default_factory=lambda: {
            "runc": RuntimeHandler(path="/usr/sbin/runc"),
            "crun": RuntimeHandler(path="/usr/bin/crun"),
        }
    )
    cni: CniConfig = field(default_factory=CniConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    pinned_images: tuple[str, ...] = ()
    shutdown_timeout: float = 10.0  # seconds in-flight calls get on SIGTERM
    restrict_oom_score_adj: bool = True  # never ask for an oom_score_adj below berthd's own

    def runtime_root(self, name: str) -> Path:
        handler = self.runtimes[name]
        return Path(handler.root) if handler.root else Path(self.state) / "runtimes" / name

    def runtime_options(self, name: str) -> tuple[str, ...]:
        """Global flags for runtime ``name``: its own, plus what the cgroup driver needs."""
        return cgroups.runtime_options(self.cgroup_driver, self.runtimes[name].options)

    def to_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = _plain(dataclasses.asdict(self))
        return plain


_CHOICES: dict[str, tuple[str, ...]] = {
    "log_level": ("debug", "info", "warning", "error"),
    "log_format": ("json", "console"),
    "cgroup_driver": ("cgroupfs", "systemd"),
}


def load(path: Path | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read ``path`` (missing file = defaults, unless given explicitly), apply flag overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            if path != DEFAULT_CONFIG_PATH:
                raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    _merge(data, overrides or {})
    config: Config = _build(Config, data, "")
    validate(config)
    return config


def _merge(data: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Apply flag overrides; a nested mapping overrides single keys of a table."""
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(data.get(key), dict):
            _merge(data[key], value)
        else:
            data[key] = dict(value) if isinstance(value, Mapping) else value


def validate(config: Config) -> None:
    """Check values that parse but cannot work."""
    for key, choices in _CHOICES.items():
        if getattr(config, key) not in choices:
            raise ConfigError(f"{key}: {getattr(config, key)!r} is not one of {', '.join(choices)}")
    for key in ("root", "state", "socket"):
        if not Path(getattr(config, key)).is_absolute():
            raise ConfigError(f"{key}: {getattr(config, key)!r} must be an absolute path")
    if config.cgroup_root != "self" and not config.cgroup_root.startswith("/"):
        raise ConfigError(f"cgroup_root: {config.cgroup_root!r} must be 'self' or an absolute path")
    _check_address("streaming_address", config.streaming_address)
    if config.metrics_address:
        _check_address("metrics_address", config.metrics_address)
    if config.default_runtime not in config.runtimes:
        raise ConfigError(f"default_runtime: no runtime handler named {config.default_runtime!r}")
    if not Path(config.runtimes[config.default_runtime].path).is_file():
        raise ConfigError(
            f"runtimes.{config.default_runtime}.path: "
            f"{config.runtimes[config.default_runtime].path} does not exist"
        )
    for number_key in ("shutdown_timeout",):
        if getattr(config, number_key) <= 0:
            raise ConfigError(f"{number_key}: must be positive")
    if config.cni.timeout <= 0:
        raise ConfigError("cni.timeout: must be positive")
    if config.registry.max_concurrent_downloads < 1:
        raise ConfigError("registry.max_concurrent_downloads: must be at least 1")
    if config.registry.stall_timeout <= 0:
        raise ConfigError("registry.stall_timeout: must be positive")


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port")
    host = host.strip("[]")
    ipaddress.ip_address(host)
    return host, int(port)


def _check_address(key: str, address: str) -> None:
    try:
        parse_address(address)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc} (an IP address and a port)") from None


def _build(cls: type[Any], data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a table")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key")
    values = {name: _convert(hints[name], data[name], prefix + name) for name in data}
    return cls(**values)


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list")
        (item,) = get_args(hint)[:1]
        return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is Mapping:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table")
        _, item = get_args(hint)
        return {k: _convert(item, v, f"{key}.{k}") for k, v in value.items()}
    return _scalar(hint, value, key)


def _scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

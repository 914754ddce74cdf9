"""What runs in a container: its argv, environment and working directory.

The argv follows Docker's rules, as containerd applies them: a CRI `command` replaces the
image's Entrypoint *and* drops its Cmd; CRI `args` replace the image's Cmd; an image
Entrypoint of exactly [""] means "no entrypoint". The environment starts from a default PATH
and HOSTNAME, then the image's Env, then the CRI envs; a later value for the same name replaces
the earlier one in place, and an image entry without "=" removes the name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci.inputs import Rlimit

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _strings(value: Any, field: str) -> list[str]:
    """A list-of-strings field of the image config (null means empty)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.InvalidArgument(f"image config {field} is not a list of strings")
    return value


def process_args(config: api_pb2.ContainerConfig, image: Mapping[str, Any]) -> list[str]:
    """argv of the container's process; errors.InvalidArgument when there is none."""
    command, args = list(config.command), list(config.args)
    if not command:
        if not args:
            args = _strings(image.get("Cmd"), "Cmd")
        entrypoint = _strings(image.get("Entrypoint"), "Entrypoint")
        command = [] if entrypoint == [""] else entrypoint
    argv = command + args
    if not argv:
        raise errors.InvalidArgument("no command specified (none in the image either)")
    return argv


def _merge_env(base: list[str], overrides: Iterable[str]) -> list[str]:
    """Replace-or-append by name; an override without "=" unsets the name."""
    merged = {entry.partition("=")[0]: entry for entry in base}
    for entry in overrides:
        name, eq, _ = entry.partition("=")
        if eq:
            merged[name] = entry
        else:
            merged.pop(name, None)
    return list(merged.values())


def _cri_env(kv: api_pb2.KeyValue) -> str:
    # The CRI carries values as bytes; the OCI spec (JSON) can only hold text.
    return f"{kv.key}={kv.value.decode('utf-8', 'replace')}"


def process_env(
    config: api_pb2.ContainerConfig, image: Mapping[str, Any], hostname: str
) -> list[str]:
    """process.env: defaults, then the image's Env, then the CRI envs (which win)."""
    for kv in config.envs:
        if not kv.key or "=" in kv.key:
            raise errors.InvalidArgument(f"invalid environment variable name {kv.key!r}")
    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    env = _merge_env(base, _strings(image.get("Env"), "Env"))
    return _merge_env(env, [_cri_env(kv) for kv in config.envs])


def process_cwd(config: api_pb2.ContainerConfig, image: Mapping[str, Any]) -> str:
    """The CRI working_dir, else the image's WorkingDir, else "/"; it must be absolute."""
    cwd = config.working_dir or image.get("WorkingDir") or "/"
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise errors.InvalidArgument(f"working directory {cwd!r} is not an absolute path")
    return cwd


def image_user(image: Mapping[str, Any]) -> str:
    """The image config's USER, "" when unset."""
    user = image.get("User") or ""
    if not isinstance(user, str):
        raise errors.InvalidArgument("image config User is not a string")
    return user


def rlimits_section(rlimits: Sequence[Rlimit]) -> list[dict[str, Any]]:
    """process.rlimits from `Rlimit` records."""
    return [{"type": r.type, "soft": r.soft, "hard": r.hard} for r in rlimits]

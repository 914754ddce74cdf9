"""The body of a failpoint wrapper: what runs in place of runc or a CNI plugin.

Standard library only: `tests.support.failpoints` writes small executables that put this
file's directory on ``sys.path`` and call :func:`main` with their settings, so the wrapper
starts in ~10 ms (``python3 -IS``) and never imports the project.

Per call the wrapper takes an exclusive lock on the plan, counts the call (per plugin and
command), picks the first armed fault whose window holds that count, appends a line to the
journal, releases the lock and then acts:

- no fault: exec the real binary (same argv, environment and descriptors);
- ``fail``: print an error the way the real tool does and exit 1 (runc: a JSON line in its
  ``--log`` file and the message on stderr; CNI: an error object on stdout);
- ``hang``: sleep ``seconds``, then exit 1 (the caller's deadline should come first);
- ``crash``: SIGKILL itself before doing anything;
- ``crash_after``: run the real binary to the end, then SIGKILL itself — the work is done
  but the caller sees a crash (a half-finished operation, from its point of view).

A *guard* (runc ``create`` only) reads the bundle's ``config.json`` and refuses, with exit 1,
a cgroups path that climbs out with ``..``, a cgroup v2 "unified" key that is a path, or a
bind mount whose source is outside the allowed prefixes; each refusal is journalled with
``action = "guard"``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

RUNC_COMMANDS = frozenset(
    {
        "checkpoint", "create", "delete", "events", "exec", "features", "kill", "list",
        "pause", "ps", "restore", "resume", "run", "spec", "start", "state", "update",
    }
)  # fmt: skip
# runc global flags that take a value (the subcommand is the first word after them).
RUNC_VALUE_FLAGS = frozenset({"--root", "--log", "--log-format", "--criu", "--rootless"})
CNI_ERROR_CODE = 999  # codes above 100 are the plugin's own (CNI spec, "Error")


def runc_command(args: Sequence[str]) -> tuple[str, int]:
    """The runc subcommand and its index in ``args`` ("", -1 if there is none)."""
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg in RUNC_VALUE_FLAGS:
            skip = True
        elif not arg.startswith("-") and arg in RUNC_COMMANDS:
            return arg, i
    return "", -1


def flag_value(args: Sequence[str], flag: str) -> str:
    for i, arg in enumerate(args[:-1]):
        if arg == flag:
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return ""


def matches(fault: Mapping[str, Any], plugin: str, command: str, count: int) -> bool:
    if fault["command"] != command or fault.get("plugin", "") not in ("", plugin):
        return False
    first = int(fault.get("nth", 1))
    times = int(fault.get("times", 1))
    return count >= first and (times == 0 or count < first + times)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    with path.open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}")
    tmp.write_text(json.dumps(value))
    tmp.rename(path)


def guard_problem(guard: Mapping[str, Any], args: Sequence[str]) -> str:
    """Why the bundle of a runc create must not run on this machine ("" if it may)."""
    bundle = flag_value(args, "--bundle") or flag_value(args, "-b") or "."
    try:
        spec = json.loads(Path(bundle, "config.json").read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable bundle config: {exc}"
    linux = spec.get("linux", {})
    cgroups = str(linux.get("cgroupsPath", ""))
    if ".." in cgroups.replace(":", "/").split("/"):
        return f"cgroupsPath {cgroups!r} climbs out with '..'"
    for key in linux.get("resources", {}).get("unified", None) or {}:
        if "/" in key or key.startswith("."):
            return f"unified cgroup key {key!r} names a path, not a cgroup file"
    allowed = tuple(str(p) for p in guard.get("mount_sources", ()))
    for mount in spec.get("mounts", []):
        source = str(mount.get("source", ""))
        bind = (
            mount.get("type") == "bind"
            or "bind" in mount.get("options", ())
            or ("rbind" in mount.get("options", ()))
        )
        if bind and allowed and not _inside(source, allowed):
            return f"bind mount source {source!r} is outside {list(allowed)}"
    return ""


def _inside(path: str, prefixes: Sequence[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == p or real.startswith(p.rstrip("/") + "/") for p in prefixes)


def decide(
    settings: Mapping[str, Any], plugin: str, command: str, args: Sequence[str]
) -> dict[str, Any]:
    """Count this call, pick its fault, journal it; returns the journal entry."""
    base = Path(settings["base"])
    with locked(base / "plan.lock"):
        plan = read_json(base / "plan.json", {})
        counters = read_json(base / "counters.json", {})
        key = f"{plugin}:{command}"
        count = counters.get(key, 0) + 1
        counters[key] = count
        write_json(base / "counters.json", counters)
        fault = next(
            (f for f in plan.get("faults", []) if matches(f, plugin, command, count)), None
        )
        entry: dict[str, Any] = {
            "pid": os.getpid(),
            "kind": settings["kind"],
            "plugin": plugin,
            "command": command,
            "count": count,
            "action": fault["action"] if fault else "",
            "message": fault.get("message", "") if fault else "",
            "seconds": float(fault.get("seconds", 3600)) if fault else 0.0,
            "args": list(args),
            "container_id": os.environ.get("CNI_CONTAINERID", ""),
            "time": time.time(),
        }
        guard = plan.get("guard")
        if not fault and guard and settings["kind"] == "runc" and command == "create":
            problem = guard_problem(guard, args)
            if problem:
                entry.update(action="guard", message=f"failpoint guard refused: {problem}")
        with (base / "journal.jsonl").open("a") as journal:
            journal.write(json.dumps(entry) + "\n")
    return entry


def fail(settings: Mapping[str, Any], entry: Mapping[str, Any], args: Sequence[str]) -> NoReturn:
    message = str(entry["message"] or "injected failure")
    if settings["kind"] == "runc":
        log = flag_value(args, "--log")
        if log:
            line = {"level": "error", "msg": message, "time": time.strftime("%FT%TZ")}
            with contextlib.suppress(OSError), open(log, "a") as f:
                f.write(json.dumps(line) + "\n")
        sys.stderr.write(message + "\n")
    else:
        config = read_stdin_json()
        error = {
            "cniVersion": config.get("cniVersion", "1.0.0"),
            "code": CNI_ERROR_CODE,
            "msg": message,
            "details": f"failpoint on {entry['plugin']} {entry['command']} call {entry['count']}",
        }
        sys.stdout.write(json.dumps(error))
    sys.stdout.flush()
    os._exit(1)


def read_stdin_json() -> dict[str, Any]:
    try:
        value = json.loads(sys.stdin.buffer.read() or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def crash() -> NoReturn:
    os.kill(os.getpid(), signal.SIGKILL)
    raise SystemExit(137)  # not reached


def main(settings: Mapping[str, Any]) -> NoReturn:
    argv = sys.argv
    real = str(settings["real"])
    if settings["kind"] == "runc":
        command, _ = runc_command(argv[1:])
        plugin = "runc"
    else:
        command = os.environ.get("CNI_COMMAND", "")
        plugin = Path(argv[0]).name
    entry = decide(settings, plugin, command, argv[1:])
    action = entry["action"]
    if action in ("fail", "guard"):
        fail(settings, entry, argv[1:])
    if action == "hang":
        time.sleep(float(entry["seconds"]))
        fail(settings, entry, argv[1:])
    if action == "crash":
        crash()
    if action == "crash_after":
        # runc's stdio is the container's: keep it; a plugin's result must not reach berthd.
        out = None if settings["kind"] == "runc" else subprocess.DEVNULL
        subprocess.run([real, *argv[1:]], stdout=out, check=False)
        crash()
    os.execv(real, [real, *argv[1:]])

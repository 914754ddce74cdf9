"""The template's rehearsal: a real keeper through a container's life, leaving nothing."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.timing import scaled
from tests.unit.shim import fresh

# Run in a fresh interpreter: the rehearsal changes process-wide state (SIGCHLD's handler,
# the child subreaper flag while it runs), as it does in the template.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from shim import rehearsal

    if sys.argv[2] == "hang":
        rehearsal.TIMEOUT = 0.5

        async def hang(*_):
            time.sleep(30)

        rehearsal.NoRuntimeJobs.start = hang
    fds = sorted(os.listdir("/proc/self/fd"))
    started = time.monotonic()
    ok = rehearsal.rehearse(Path(sys.argv[1]) / "r")
    try:
        os.waitpid(-1, os.WNOHANG)
        children = True
    except ChildProcessError:
        children = False
    print(json.dumps({
        "ok": ok,
        "seconds": time.monotonic() - started,
        "fds_kept": sorted(os.listdir("/proc/self/fd")) == fds,
        "dir_left": (Path(sys.argv[1]) / "r").exists(),
        "children": children,
    }), flush=True)  # (os._exit does not flush)
    os._exit(0)
    """
)


def rehearse(tmp_path: Path, mode: str) -> dict[str, object]:
    result, stderr = fresh.run(SCRIPT, str(tmp_path), mode)
    result["stderr"] = stderr
    return dict(result)


def test_a_rehearsal_goes_through_and_leaves_nothing(tmp_path: Path) -> None:
    result = rehearse(tmp_path, "normal")
    assert result["ok"] is True, result["stderr"]
    assert result["fds_kept"] and not result["dir_left"] and not result["children"], result


def test_a_stuck_rehearsal_is_given_up_on(tmp_path: Path) -> None:
    result = rehearse(tmp_path, "hang")
    assert result["ok"] is False
    assert isinstance(result["seconds"], float) and result["seconds"] < scaled(5), result
    assert "did not go through" in str(result["stderr"])
    assert not result["dir_left"]


KEEPER_CALLS = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from shim import keeper, rehearsal, template

    template._warm()  # as the template does, then its rehearsal: the shims' starting point
    assert rehearsal.rehearse(Path(sys.argv[1]) / "r")
    me, calls, run = os.getpid(), set(), keeper.Keeper.run

    def record(frame, event, arg):
        if event == "call" and os.getpid() == me:  # not the forked workers
            calls.add(frame.f_code.co_filename)

    def traced(self):
        sys.setprofile(record)
        try:
            run(self)
        finally:
            sys.setprofile(None)

    keeper.Keeper.run = traced
    assert rehearsal.rehearse(Path(sys.argv[1]) / "r")
    print(json.dumps(sorted(calls)))
    """
)


def test_the_keeper_runs_only_its_own_code(tmp_path: Path) -> None:
    """Every Python function a shim runs costs it pages of its own (see shim.template):
    over a container's whole life the keeper of a forked shim calls no Python code of
    the standard library (pathlib, socket objects, json's wrappers, typing, contextlib,
    signal's enums...). A second rehearsal stands for such a shim."""
    files, _ = fresh.run(KEEPER_CALLS, str(tmp_path))
    assert fresh.foreign(files) == []
    assert f"{fresh.SHIM_DIR}/keeper.py" in files

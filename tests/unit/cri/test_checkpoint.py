from __future__ import annotations

from pathlib import Path

import pytest

from cri import checkpoint, errors


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_missing_criu_is_named() -> None:
    problem = checkpoint.criu_problem("berth-no-such-criu")
    assert problem == "CRIU is not installed: no 'berth-no-such-criu' on PATH"


def test_failing_criu_check_is_quoted(tmp_path: Path) -> None:
    criu = script(tmp_path / "criu", 'echo "Error (vdso.c:1): bad vdso" >&2; exit 1\n')
    problem = checkpoint.criu_problem(criu)
    assert problem is not None and "'criu check' failed: Error (vdso.c:1): bad vdso" in problem


def test_working_criu_is_no_problem(tmp_path: Path) -> None:
    assert checkpoint.criu_problem(script(tmp_path / "criu", "echo Looks good.\n")) is None


async def test_refuse_says_failed_precondition_or_unimplemented(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(checkpoint, "criu_problem", lambda: "CRIU is not installed")
    with pytest.raises(errors.FailedPrecondition, match="cannot checkpoint x: CRIU is not"):
        await checkpoint.refuse("checkpoint x")
    monkeypatch.setattr(checkpoint, "criu_problem", lambda: None)
    with pytest.raises(errors.Unimplemented) as info:
        await checkpoint.refuse("checkpoint x")
    assert info.value.kind == "unimplemented"

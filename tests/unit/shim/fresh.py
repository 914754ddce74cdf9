"""Run a script in a fresh interpreter (process-wide state stays out of the test process)
and read the JSON its last line of output holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import shim

SHIM_DIR = str(Path(shim.__file__).parent)


def run(script: str, *args: str) -> tuple[Any, str]:
    """(the JSON of the script's last stdout line, its stderr)."""
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout.splitlines()[-1]), out.stderr


def foreign(code_files: list[str]) -> list[str]:
    """The files among `code_files` that are not berth's shim package (nor the code
    dataclasses generate, "<string>")."""
    return [f for f in code_files if not f.startswith(SHIM_DIR + "/") and f != "<string>"]

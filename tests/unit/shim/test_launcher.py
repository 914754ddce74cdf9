"""The launcher's part before the template starts: the shim package's bytecode is current."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from shim import launcher


async def test_missing_and_stale_bytecode_is_written_before_the_template_starts(
    tmp_path: Path,
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    source = package / "mod.py"
    source.write_text("X = 1\n")
    cached = package / "__pycache__" / f"mod.{sys.implementation.cache_tag}.pyc"
    await launcher.compile_package(sys.executable, str(package))
    assert cached.exists()
    first = cached.read_bytes()
    source.write_text("X = 22\n")
    os.utime(source, (1, 1))  # an edit the cache does not match
    await launcher.compile_package(sys.executable, str(package))
    assert cached.read_bytes() != first


async def test_a_package_it_cannot_compile_is_left_alone(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "broken.py").write_text("def (:\n")
    await launcher.compile_package(sys.executable, str(package))  # no error raised
    await launcher.compile_package(sys.executable, str(tmp_path / "missing"))
    assert not (package / "__pycache__").exists() or not any((package / "__pycache__").iterdir())


def test_the_shim_package_is_what_is_compiled() -> None:
    assert Path(launcher.SHIM_PACKAGE, "keeper.py").is_file()
    assert Path(launcher.SHIM_ROOT, "shim") == Path(launcher.SHIM_PACKAGE)

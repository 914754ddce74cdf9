"""Debian packages as plain directories: `apt-get download` then `dpkg-deb -x`, both cached.

Nothing is installed: Debian's dynamic `busybox` conflicts with `busybox-static`, which the
rest of the project needs at /bin/busybox, so packages are only unpacked into the cache.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path


class DebError(Exception):
    """A package could not be downloaded or unpacked; the message names it."""


def cached_deb(package: str, debs_dir: Path) -> Path | None:
    """The newest cached .deb of `package` (file names sort by version well enough)."""
    found = sorted(debs_dir.glob(f"{package}_*.deb"))
    return found[-1] if found else None


def fetch_deb(package: str, debs_dir: Path) -> Path:
    """The .deb of `package` for this machine, downloaded once into `debs_dir`.

    If apt has no package lists yet (a fresh machine), runs `apt-get update` once and retries.
    """
    debs_dir.mkdir(parents=True, exist_ok=True)
    if (deb := cached_deb(package, debs_dir)) is not None:
        return deb
    if _download(package, debs_dir) != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        if _download(package, debs_dir) != 0:
            raise DebError(f"apt-get download {package} failed (is Debian's archive reachable?)")
    if (deb := cached_deb(package, debs_dir)) is None:
        raise DebError(f"apt-get download {package} left no .deb in {debs_dir}")
    return deb


def _download(package: str, debs_dir: Path) -> int:
    # apt drops privileges to _apt for downloads; a root-only cache dir makes it warn and
    # fall back to root, which is harmless, so its stderr is not shown.
    done = subprocess.run(
        ["apt-get", "download", "-qq", package], cwd=debs_dir, capture_output=True, check=False
    )
    return done.returncode


def unpack_deb(deb: Path, roots_dir: Path) -> Path:
    """The files of `deb` under `roots_dir/<deb name>/`, unpacked once (atomically)."""
    dest = roots_dir / deb.stem
    if dest.is_dir():
        return dest
    roots_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=roots_dir, prefix=".unpack-"))
    try:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch)], check=True, capture_output=True)
        scratch.rename(dest)
    except subprocess.CalledProcessError as exc:
        raise DebError(f"dpkg-deb -x {deb} failed: {exc.stderr.decode(errors='replace')}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest


def package_root(package: str, cache: Path) -> Path:
    """Download (once) and unpack (once) `package`; returns the directory of its files."""
    return unpack_deb(fetch_deb(package, cache / "debs"), cache / "roots")

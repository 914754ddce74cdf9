"""Build a tiny busybox image from the host's busybox-static, for the offline quick start.

The result is a `docker save` tarball (manifest.json, the image config, one layer) that
``berthctl images import`` loads, so a first pod runs with no registry and no internet.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = int(time.time())
    for key, value in attrs.items():
        setattr(info, key, value)
    if info.type == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def rootfs_tar(busybox: Path = BUSYBOX) -> bytes:
    """/bin/busybox with its applets as hard links, /etc/passwd and /etc/group, /tmp."""
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "etc", "proc", "sys", "dev", "root", "tmp"):
            mode = 0o1777 if d == "tmp" else 0o755
            _add(tar, d, type=tarfile.DIRTYPE, mode=mode)
        _add(tar, "bin/busybox", busybox.read_bytes(), mode=0o755)
        for name in sorted(set(applets) - {"busybox"}):
            # mode as the target's: some unpackers apply a hard link's mode to the inode
            _add(tar, f"bin/{name}", type=tarfile.LNKTYPE, linkname="bin/busybox", mode=0o755)
        _add(tar, "etc/passwd", PASSWD, mode=0o644)
        _add(tar, "etc/group", GROUP, mode=0o644)
    return buf.getvalue()


def write_docker_archive(dest: Path, tag: str, busybox: Path = BUSYBOX) -> None:
    layer = rootfs_tar(busybox)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]
    with tarfile.open(dest, "w") as tar:
        _add(tar, config_name, config, mode=0o644)
        _add(tar, layer_name, layer, mode=0o644)
        _add(tar, "manifest.json", json.dumps(manifest).encode(), mode=0o644)

"""The bridge network berth's setup script installs when a node has no CNI config.

Never used by berthd on its own: a node without a config reports NetworkReady=false until the
administrator (or ``install_default``) provides one. Loopback is not in the chain: berthd
brings ``lo`` up itself when it creates a pod's netns (one ioctl instead of a plugin exec).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cri.cni.config import config_files

DEFAULT_FILE_NAME = "10-berth.conflist"

DEFAULT_CONFLIST: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "berth",
    "plugins": [
        {
            "type": "bridge",
            "bridge": "berth0",
            "isGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.88.0.0/16"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        },
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}


def install_default(conf_dir: Path) -> Path:
    """Write the default conflist into ``conf_dir`` unless it holds a config already.

    Returns the written file, or the first existing config file (left untouched).
    """
    existing = config_files(conf_dir)
    if existing:
        return existing[0]
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / DEFAULT_FILE_NAME
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=conf_dir)
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(DEFAULT_CONFLIST, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

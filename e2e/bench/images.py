"""The images a run pushes to its loopback registry.

- busybox (busybox-static, applets as hard links): every pod's container;
- a big image of incompressible random layers (default 4 x 30 MB, gzip): pull throughput;
- a pause image for containerd (`sandbox_image`): catatonit in pause mode, which Debian
  builds statically linked, so the image needs nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from tests.support.oci_builder import (
    Image,
    ImageSpec,
    busybox_entries,
    directory,
    file,
    layer,
    make_image,
    random_layer,
)
from tests.support.registry import RegistryServer, push_image

CATATONIT = Path("/usr/bin/catatonit")
PAUSE = ImageSpec(entrypoint=["/catatonit", "-P"])


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchImages:
    busybox: str
    big: str
    big_bytes: int  # sum of the big image's compressed layer sizes (what a pull transfers)
    big_layers: int
    pause: str
    critest: str  # critest's image benchmarks pull and *remove* it: never the busybox above


def busybox(labels: dict[str, str] | None = None) -> Image:
    """busybox whose hard-link headers carry the binary's mode.

    oci_builder's hard links say 0644; containerd applies a hard link's header mode to the
    shared inode (as Docker does), which leaves /bin/busybox not executable. berth does not.
    """
    entries = [
        dataclasses.replace(e, mode=0o755) if e.kind == "hardlink" else e for e in busybox_entries()
    ]
    return make_image([layer(entries)], ImageSpec(cmd=["sh"], labels=labels or {}))


def build_and_push(registry: RegistryServer, *, layers: int, layer_mb: int) -> BenchImages:
    host = registry.host
    push_image(registry.url, "bench/busybox", "latest", busybox())
    # Another image id (a label in the config): removing it must not remove busybox's tags.
    push_image(registry.url, "bench/critest", "latest", busybox({"bench.role": "critest"}))
    big_layers = [random_layer(layer_mb * 10**6, name=f"data{i}") for i in range(layers)]
    push_image(registry.url, "bench/big", "latest", make_image(big_layers))
    pause_layer = layer([directory("dev"), directory("proc"), directory("sys"),
                         file("catatonit", CATATONIT.read_bytes(), mode=0o755)])  # fmt: skip
    push_image(registry.url, "bench/pause", "3.9", make_image([pause_layer], PAUSE))
    return BenchImages(
        busybox=f"{host}/bench/busybox:latest",
        big=f"{host}/bench/big:latest",
        big_bytes=sum(lay.size for lay in big_layers),
        big_layers=layers,
        pause=f"{host}/bench/pause:3.9",
        critest=f"{host}/bench/critest:latest",
    )

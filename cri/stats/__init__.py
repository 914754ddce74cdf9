"""Container and pod statistics: cgroup readers, the CPU sampler, writable-layer usage, and
the collector the stats and metrics RPCs use (``rt.stats``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cri import cgroups
from cri.stats.cgroupfs import CgroupLayout, parse_proc_cgroup
from cri.stats.collector import StatsCollector, configured_pod_dirs
from cri.stats.disk import WritableLayers
from snapshotter.mount import writable_dir

if TYPE_CHECKING:
    from cri.config import Config
    from snapshotter.images import ImageStore

__all__ = ["StatsCollector", "for_host"]


def for_host(config: Config, images: ImageStore) -> StatsCollector:
    """A collector for this host's cgroup layout and berthd's own place in it."""
    layout = CgroupLayout.from_text(
        Path("/proc/self/mountinfo").read_text(), v2_controllers=cgroups.is_cgroup_v2()
    )
    self_dirs = layout.dirs(parse_proc_cgroup(Path("/proc/self/cgroup").read_text()))
    return StatsCollector(
        layout=layout,
        layers=WritableLayers(lambda cid: writable_dir(images.rootfs_mounts(cid))),
        pod_dirs=configured_pod_dirs(
            layout,
            cgroup_root=config.cgroup_root,
            driver=config.cgroup_driver,
            self_dirs=self_dirs,
        ),
    )

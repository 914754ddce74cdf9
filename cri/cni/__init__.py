"""The runtime side of CNI: network config selection, plugin execution, results, the cache.

Start at :class:`cri.cni.manager.CniManager`; :class:`cri.cni.pod.PodNetwork` is its input.
"""

from __future__ import annotations

from cri.cni.manager import CniManager, CniStatus
from cri.cni.pod import PodNetwork, PortMapping
from cri.cni.result import CniResult

__all__ = ["CniManager", "CniResult", "CniStatus", "PodNetwork", "PortMapping"]

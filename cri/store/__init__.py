"""berthd's durable metadata: sandboxes and containers (images live in the snapshotter)."""

from cri.store.records import ContainerRecord, SandboxRecord
from cri.store.store import Store

__all__ = ["ContainerRecord", "SandboxRecord", "Store"]

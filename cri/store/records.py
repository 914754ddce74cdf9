"""What berthd remembers about each sandbox and container, durably.

Records are immutable; a change writes a new record (``dataclasses.replace``). The CRI
configs are kept as serialized protobuf so labels, annotations and every field come back
exactly as the kubelet sent them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cri.api.v1 import api_pb2

R = TypeVar("R", "SandboxRecord", "ContainerRecord")


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxRecord:
    id: str
    config: api_pb2.PodSandboxConfig
    runtime_handler: str
    created_at: int  # ns since the epoch
    state: int = api_pb2.SANDBOX_READY
    namespaces: dict[str, str] = field(default_factory=dict)  # kind -> pinned path
    ip: str = ""
    additional_ips: tuple[str, ...] = ()
    files_dir: str = ""  # hostname, resolv.conf, hosts, shm
    cgroup_parent: str = ""
    network_ready: bool = False  # CNI ADD succeeded and DEL has not run yet
    infra_pid: int = 0  # PID 1 of the pod's shared PID namespace, when it has one

    @property
    def name_key(self) -> str:
        m = self.config.metadata
        return f"{m.name}_{m.namespace}_{m.uid}_{m.attempt}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerRecord:
    id: str
    sandbox_id: str
    config: api_pb2.ContainerConfig
    image_id: str  # sha256:<config digest>
    image_ref: str  # repo digest when known, else the image id
    image_name: str  # what the kubelet asked for (ContainerStatus.image.image)
    created_at: int
    runtime_handler: str
    log_path: str = ""  # absolute, "" when the sandbox has no log directory
    uid: int = 0  # the process user the spec resolved, for ContainerStatus.user
    gid: int = 0
    groups: tuple[int, ...] = ()
    image_volumes: dict[str, str] = field(default_factory=dict)  # container path -> image id
    state: int = api_pb2.CONTAINER_CREATED
    pid: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""

    @property
    def name_key(self) -> str:
        return f"{self.sandbox_id}/{self.config.metadata.name}"


_PROTO_FIELDS = {SandboxRecord: api_pb2.PodSandboxConfig, ContainerRecord: api_pb2.ContainerConfig}


def encode(record: SandboxRecord | ContainerRecord) -> str:
    data: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.name == "config":
            value = base64.b64encode(value.SerializeToString(deterministic=True)).decode()
        data[f.name] = value
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def decode(cls: type[R], text: str) -> R:
    data = json.loads(text)
    config = _PROTO_FIELDS[cls]()
    config.ParseFromString(base64.b64decode(data.pop("config")))
    known = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known
    }
    return cls(config=config, **values)

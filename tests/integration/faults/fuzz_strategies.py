"""hypothesis strategies for every CRI request, built from the protobuf descriptors.

Each request type gets two kinds of examples:

- *random*: every field drawn from its type (boundary integers, unknown enum values, hostile
  strings, nested messages to a small depth, maps and lists that may be long or huge);
- *mutated*: a valid request (a pod, a container of a live pod, an exec in a running
  container…) with a few fields, anywhere in its tree, replaced by random or hostile values —
  so the fuzzer also gets past validation into the code that acts.

Hostile but machine-safe: values that could hurt the host if berthd passed them on (bind-mount
sources, device paths, host ports, log paths) are drawn so that damage shows up in places the
run watches — the canary dir, files named with `MARK` — instead of in /etc or on port 22. The
runc guard (`tests.support.failpoints.Guard`) refuses what still gets through.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from cri.api.v1 import api_pb2
from tests.support.cri_configs import container_config, sandbox_config

MARK: Final = "fzq7"  # in every path-like value the fuzzer makes: find what it created
SECRET: Final = f"pw-{MARK}-secret"  # in every credential: must never be logged or stored
MAX_DEPTH: Final = 2  # of random messages; mutations of valid requests reach deeper
F = FieldDescriptor
S = st.SearchStrategy
# Descriptors as the upb runtime hands them out (the stubs make every nested type Optional).
Field = Any
Desc = Any

INT_RANGES: Final[Mapping[int, tuple[int, int]]] = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}
HUGE: Final = ("x" * (1 << 20), "y" * (5 << 20))  # 1 MiB; 5 MiB is over gRPC's 4 MiB limit


@dataclass(frozen=True, slots=True, kw_only=True)
class Targets:
    """Live objects and safe places the strategies point at."""

    pod_id: str
    pod_config: api_pb2.PodSandboxConfig
    container_id: str  # running `sleep 1000`
    created: tuple[str, ...]  # containers created, never started
    image: str  # a pulled image's reference
    image_id: str
    canary: Path  # the only host dir bind mounts may come from
    registry_host: str
    cgroup_parent: str


# -- scalar values -------------------------------------------------------------------------


def boundary_ints(lo: int, hi: int) -> S[int]:
    edges = sorted({lo, hi, 0, 1, -1, 2, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1})
    inside = [v for v in edges if lo <= v <= hi]
    return st.one_of(st.sampled_from(inside), st.integers(lo, hi))


def rarely(common: S[Any], rare: S[Any], one_in: int = 40) -> S[Any]:
    """``rare`` one draw in ``one_in``: huge values are costly, and a request over gRPC's size
    limit is turned away before it reaches anything else."""
    return st.integers(0, one_in - 1).flatmap(lambda n: rare if n == 0 else common)


def hostile_strings() -> S[str]:
    fixed = [
        "", " ", "a", "..", ".", "/", "//", "../../../../etc/passwd", "/etc/shadow",
        f"../../{MARK}-escape", f"/{MARK}-abs", f"{MARK}/../../..", "\x00", "a\x00b", "\n",
        "\u202e\u0000\ud7ff", "%s%n%x", f"$(touch /tmp/{MARK}-cmd)", "*", "?", "default",
        "kube-system", "-", "--help", "ALL", "a" * 63, "a" * 64, "a" * 254, "b" * 4096,
        "0" * 64, "sha256:" + "0" * 64, "sha256:", "::1", "[::1]:80", "999.999.999.999",
    ]  # fmt: skip
    common = st.one_of(
        st.sampled_from(fixed),
        st.text(max_size=40),
        st.text(alphabet="abc./-_:@", max_size=30).map(lambda s: f"{s}{MARK}"),
    )
    return rarely(common, st.sampled_from(HUGE))


def ids(t: Targets) -> S[str]:
    real = [t.pod_id, t.container_id, *t.created, t.image_id]
    prefixes = [r[:n] for r in real for n in (1, 6, 12)]
    return st.one_of(
        st.sampled_from(real),
        st.sampled_from(prefixes),
        st.sampled_from([f"{t.pod_id}/../{t.container_id}", "../" + t.container_id]),
        st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        hostile_strings(),
    )


def image_refs(t: Targets) -> S[str]:
    return st.one_of(
        st.sampled_from(
            [
                t.image,
                t.image_id,
                t.image_id.removeprefix("sha256:")[:12],
                f"{t.registry_host}/library/busybox@sha256:{'0' * 64}",
                f"{t.registry_host}/{MARK}/missing:1",
                f"{t.registry_host}/../../{MARK}:1",
                f"127.0.0.1:1/{MARK}:1",  # nothing listens: refused at once
                f"{MARK}.invalid/app:1",  # unknown host (no DNS answer here)
                "busybox",
                "busybox:",
                "UPPER/case",
                "a" * 300,
            ]
        ),
        hostile_strings(),
    )


def canary_paths(t: Targets) -> S[str]:
    base = str(t.canary / "mnt")
    return st.one_of(
        st.sampled_from(
            [
                base,
                f"{base}/{MARK}-new",
                f"{base}/../mnt",
                f"{MARK}-relative",
                f"../{MARK}-relative",
                "",
                f"/nonexistent-{MARK}/x",
            ]
        ),
        st.text(alphabet="ab./", max_size=12).map(lambda s: f"{base}/{s}{MARK}"),
    )


def device_paths() -> S[str]:
    return st.sampled_from(
        ["/dev/null", "/dev/zero", "/dev/full", f"/dev/{MARK}", "", "dev/null", "/dev/../dev/null"]
    )


def cgroup_parents(t: Targets) -> S[str]:
    p = t.cgroup_parent
    return st.sampled_from(
        ["", p, f"{p}/sub", f"{p}.slice", f"{p}/../{MARK}", f"../../{MARK}", "/", "//", f"{p}/.."]
    )


def log_dirs(t: Targets) -> S[str]:
    base = str(t.canary / "logs")
    return st.sampled_from(
        ["", f"{base}/{MARK}", f"{base}/../{MARK}-up", f"{MARK}-rel", f"{base}/{MARK}/../../.."]
    )


def log_paths() -> S[str]:
    return st.sampled_from(
        ["", "c.log", "a/b/c.log", f"../{MARK}.log", f"../../../{MARK}.log", f"/{MARK}-abs.log"]
    )


def profile_refs() -> S[str]:
    return st.sampled_from(
        ["", "/etc/shadow", "/etc/passwd", "localhost/../../etc/passwd", f"/{MARK}.json", "/"]
    )


def secrets_() -> S[str]:
    return st.integers(0, 999).map(lambda n: f"{SECRET}-{n}")


def commands(longest: str = "1000") -> S[list[str]]:
    """Commands; an exec's are short (one without a timeout waits for its command to end)."""
    safe = [["sleep", longest], ["sh", "-c", "exit 3"], ["true"], ["echo", MARK], []]
    return st.one_of(st.sampled_from(safe), st.lists(hostile_strings(), max_size=3))


def host_ports() -> S[int]:
    # Ports a portmap rule can safely take here: never 22 or a test's own listeners.
    return st.sampled_from([0, -1, 40123, 40124, 65535, 65536, 2**31 - 1])


# -- fields and messages ------------------------------------------------------------------

Override = Callable[[Targets], S[Any]]

OVERRIDES: Final[Mapping[tuple[str, str], Override]] = {
    ("Mount", "host_path"): canary_paths,
    ("Device", "host_path"): lambda t: device_paths(),
    ("LinuxPodSandboxConfig", "cgroup_parent"): cgroup_parents,
    ("PodSandboxConfig", "log_directory"): log_dirs,
    ("ContainerConfig", "log_path"): lambda t: log_paths(),
    ("ContainerConfig", "command"): lambda t: commands(),
    ("ContainerConfig", "args"): lambda t: commands(),
    ("ExecSyncRequest", "cmd"): lambda t: commands("1"),
    ("ExecRequest", "cmd"): lambda t: commands("1"),
    ("ExecSyncRequest", "timeout"): lambda t: st.sampled_from([-1, 0, 1, 2, -(2**63)]),
    ("StopContainerRequest", "timeout"): lambda t: st.sampled_from([-(2**63), -1, 0, 1]),
    ("PortMapping", "host_port"): lambda t: host_ports(),
    ("SecurityProfile", "localhost_ref"): lambda t: profile_refs(),
    ("LinuxContainerSecurityContext", "seccomp_profile_path"): lambda t: profile_refs(),
    ("LinuxContainerSecurityContext", "apparmor_profile"): lambda t: profile_refs(),
    ("ImageSpec", "image"): image_refs,
    ("AuthConfig", "password"): lambda t: secrets_(),
    ("AuthConfig", "auth"): lambda t: secrets_(),
    ("AuthConfig", "identity_token"): lambda t: secrets_(),
    ("AuthConfig", "registry_token"): lambda t: secrets_(),
}
ID_FIELDS: Final = frozenset({"pod_sandbox_id", "container_id", "id", "target_id"})


def field_values(field: Field, t: Targets, depth: int) -> S[Any]:
    """Values for one field (a list for a repeated field, a dict for a map)."""
    override = OVERRIDES.get((field.containing_type.name, field.name))
    if override is not None:
        return override(t)
    if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields
        small = st.dictionaries(scalar(key, t), field_values(value, t, depth - 1), max_size=4)
        if value.type == F.TYPE_MESSAGE:
            return small
        return rarely(small, st.just({f"k{i}": "v" * 100 for i in range(2000)}))
    single = (
        scalar(field, t)
        if field.type != F.TYPE_MESSAGE
        else plans(field.message_type, t, depth - 1)
    )
    if field.is_repeated:
        return st.lists(single, max_size=4)
    return single


def scalar(field: Field, t: Targets) -> S[Any]:
    kind = field.type
    if kind == F.TYPE_STRING:
        return ids(t) if field.name in ID_FIELDS else hostile_strings()
    if kind == F.TYPE_BYTES:
        return rarely(st.binary(max_size=64), st.just(b"\0" * (1 << 20)))
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind == F.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.sampled_from(known) | st.sampled_from([-1, max(known) + 1, 2**31 - 1])
    if kind in INT_RANGES:
        return boundary_ints(*INT_RANGES[kind])
    raise TypeError(f"no strategy for {field.full_name} (type {kind})")


def plans(descriptor: Desc, t: Targets, depth: int) -> S[dict[str, Any]]:
    """A message as {field: value}; below `depth` 0 nested messages stay empty."""
    if depth < 0:
        return st.just({})
    fields = {f.name: field_values(f, t, depth) for f in descriptor.fields}
    return st.fixed_dictionaries({}, optional=fields)


def build(cls: type[Message], plan: Mapping[str, Any]) -> Message:
    message = cls()
    fill(message, plan)
    return message


def fill(message: Message, plan: Mapping[str, Any]) -> None:
    for name, value in plan.items():
        field: Field = message.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            _fill_map(field, target, value)
        elif field.type == F.TYPE_MESSAGE and field.is_repeated:
            for item in value:
                fill(target.add(), item)
        elif field.type == F.TYPE_MESSAGE:
            fill(target, value)
            target.SetInParent()
        elif field.is_repeated:
            target.extend(value)
        else:
            setattr(message, name, value)


def _fill_map(field: Field, target: Any, value: Mapping[Any, Any]) -> None:
    value_field = field.message_type.fields_by_name["value"]
    for key, item in value.items():
        if value_field.type == F.TYPE_MESSAGE:
            fill(target[key], item)
        else:
            target[key] = item


# -- valid requests to mutate ---------------------------------------------------------------


def templates(t: Targets) -> Mapping[str, Callable[[], Message]]:
    """A valid request per RPC that acts on something (fresh names on every call)."""

    def pod() -> api_pb2.PodSandboxConfig:
        name = f"fz-{uuid.uuid4().hex[:8]}"
        config = sandbox_config(name, log_directory=str(t.canary / "logs" / name))
        config.linux.cgroup_parent = t.cgroup_parent
        return config

    def container() -> api_pb2.ContainerConfig:
        name = f"c-{uuid.uuid4().hex[:8]}"
        return container_config(name, t.image, ["sleep", "1000"], log_path=f"{name}.log")

    r = api_pb2
    return {
        "RunPodSandbox": lambda: r.RunPodSandboxRequest(config=pod()),
        "CreateContainer": lambda: r.CreateContainerRequest(
            pod_sandbox_id=t.pod_id, config=container(), sandbox_config=t.pod_config
        ),
        "StartContainer": lambda: r.StartContainerRequest(container_id=t.created[0]),
        "ExecSync": lambda: r.ExecSyncRequest(container_id=t.container_id, cmd=["true"], timeout=5),
        "Exec": lambda: r.ExecRequest(container_id=t.container_id, cmd=["sh"], stdout=True),
        "Attach": lambda: r.AttachRequest(container_id=t.container_id, stdout=True),
        "PortForward": lambda: r.PortForwardRequest(pod_sandbox_id=t.pod_id, port=[80]),
        "ContainerStatus": lambda: r.ContainerStatusRequest(container_id=t.container_id),
        "PodSandboxStatus": lambda: r.PodSandboxStatusRequest(pod_sandbox_id=t.pod_id),
        "UpdateContainerResources": lambda: r.UpdateContainerResourcesRequest(
            container_id=t.container_id, linux=r.LinuxContainerResources(cpu_shares=512)
        ),
        "ReopenContainerLog": lambda: r.ReopenContainerLogRequest(container_id=t.container_id),
        "PullImage": lambda: r.PullImageRequest(image=r.ImageSpec(image=t.image)),
        "ImageStatus": lambda: r.ImageStatusRequest(image=r.ImageSpec(image=t.image)),
    }


def leaf_paths(descriptor: Desc, depth: int = MAX_DEPTH) -> list[tuple[Field, ...]]:
    """Every field path (through singular messages) below a request type."""
    paths: list[tuple[Field, ...]] = []
    for field in descriptor.fields:
        paths.append((field,))
        nested = field.type == F.TYPE_MESSAGE and not field.is_repeated
        if nested and depth > 0 and not field.message_type.GetOptions().map_entry:
            paths += [(field, *rest) for rest in leaf_paths(field.message_type, depth - 1)]
    return paths


@st.composite
def mutated(draw: st.DrawFn, make: Callable[[], Message], t: Targets) -> Message:
    message = make()
    paths = leaf_paths(message.DESCRIPTOR)
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
        holder = message
        for field in path[:-1]:
            holder = getattr(holder, field.name)
        last = path[-1]
        holder.ClearField(last.name)
        fill(holder, {last.name: draw(field_values(last, t, 1))})
    return message


def requests(method: MethodDescriptor, t: Targets) -> S[Message]:
    """Examples for one RPC: random ones, and mutations of a valid one if there is one."""
    cls = getattr(api_pb2, method.input_type.name)
    random = plans(method.input_type, t, MAX_DEPTH).map(lambda plan: build(cls, plan))
    make = templates(t).get(method.name)
    if make is None:
        return random
    return st.one_of(random, mutated(make, t), st.builds(make))

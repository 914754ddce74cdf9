"""Which uid, gid and groups a container's process runs as.

The user comes from the CRI security context — `run_as_username` over `run_as_user` — with
`run_as_group` as its group; without either, from the image's `USER` ("name", "uid",
"uid:gid", "name:group"); without that, root. Names resolve through the container's own
/etc/passwd and /etc/group (read with the callback the caller passes, which reads the image),
never the host's. A numeric uid that has no passwd entry is fine: its group is 0 unless one was
given. The process always carries its primary gid among its groups; with the Merge policy it
also gets every /etc/group membership of its user name, with Strict only what the request
lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from cri import errors
from cri.api.v1 import api_pb2

ReadFile = Callable[[str], bytes | None]

# runc refuses ids above the int32 range, as containerd does.
_MAX_ID = 2**31 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessUser:
    """The resolved identity; `username` is empty when the uid has no passwd entry."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    username: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def _lines(data: bytes | None) -> Iterator[list[str]]:
    """Colon-separated fields of each non-comment line of a passwd/group file."""
    for raw in (data or b"").decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            yield line.split(":")


def parse_passwd(data: bytes | None) -> list[PasswdEntry]:
    """Entries of an /etc/passwd; malformed lines are skipped, as libc does."""
    out = []
    for f in _lines(data):
        if len(f) >= 4 and f[2].isdigit() and f[3].isdigit():
            out.append(PasswdEntry(name=f[0], uid=int(f[2]), gid=int(f[3])))
    return out


def parse_group(data: bytes | None) -> list[GroupEntry]:
    """Entries of an /etc/group; malformed lines are skipped."""
    out = []
    for f in _lines(data):
        if len(f) >= 3 and f[2].isdigit():
            members = tuple(m.strip() for m in (f[3] if len(f) > 3 else "").split(",") if m.strip())
            out.append(GroupEntry(name=f[0], gid=int(f[2]), members=members))
    return out


def _checked_id(value: int, what: str) -> int:
    if not 0 <= value <= _MAX_ID:
        raise errors.InvalidArgument(f"{what} {value} is out of range")
    return value


def _numeric(text: str, what: str) -> int | None:
    """The id in `text` when it is a number, else None (it is a name)."""
    return _checked_id(int(text), what) if text.isdigit() else None


def user_spec(sc: api_pb2.LinuxContainerSecurityContext, image_user: str) -> str:
    """The "user[:group]" string the process runs as, before any name is resolved."""
    user = sc.run_as_username
    if not user and sc.HasField("run_as_user"):
        user = str(_checked_id(sc.run_as_user.value, "run_as_user"))
    if sc.HasField("run_as_group"):
        if not user:
            raise errors.InvalidArgument("run_as_group is set without run_as_user or username")
        return f"{user}:{_checked_id(sc.run_as_group.value, 'run_as_group')}"
    return user or image_user.strip() or "0"


class _Files:
    """The container's passwd and group databases, read once on first use."""

    def __init__(self, read_file: ReadFile) -> None:
        self._read = read_file
        self._passwd: list[PasswdEntry] | None = None
        self._group: list[GroupEntry] | None = None

    def passwd(self) -> list[PasswdEntry]:
        if self._passwd is None:
            self._passwd = parse_passwd(self._read("/etc/passwd"))
        return self._passwd

    def group(self) -> list[GroupEntry]:
        if self._group is None:
            self._group = parse_group(self._read("/etc/group"))
        return self._group

    def by_uid(self, uid: int) -> PasswdEntry | None:
        return next((e for e in self.passwd() if e.uid == uid), None)

    def by_name(self, name: str) -> PasswdEntry:
        entry = next((e for e in self.passwd() if e.name == name), None)
        if entry is None:
            raise errors.InvalidArgument(f"user {name!r} not found in the image's /etc/passwd")
        return entry

    def gid_of(self, name: str) -> int:
        entry = next((g for g in self.group() if g.name == name), None)
        if entry is None:
            raise errors.InvalidArgument(f"group {name!r} not found in the image's /etc/group")
        return entry.gid

    def memberships(self, username: str) -> list[int]:
        """Groups listing `username` as a member (its own-named group is its primary one)."""
        return [g.gid for g in self.group() if username in g.members and g.name != username]


def _resolve_user(text: str, files: _Files) -> PasswdEntry:
    """The passwd view of the user part: a name must exist, a bare uid need not."""
    uid = _numeric(text, "uid")
    if uid is None:
        return files.by_name(text)
    found = files.by_uid(uid)
    return found if found is not None else PasswdEntry(name="", uid=uid, gid=0)


def _resolve_group(text: str, files: _Files) -> int:
    gid = _numeric(text, "gid")
    return gid if gid is not None else files.gid_of(text)


def _sorted_ids(ids: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(set(ids)))


def resolve_process_user(
    sc: api_pb2.LinuxContainerSecurityContext, image_user: str, read_file: ReadFile
) -> ProcessUser:
    """Resolve the process identity of a container (see the module docstring for the rules).

    Raises errors.InvalidArgument for a name that the image does not define, an id out of
    range, a malformed user string, or run_as_group without a user. Reads the image's files
    through `read_file` only; no other I/O.
    """
    parts = user_spec(sc, image_user).split(":")
    if len(parts) > 2 or not all(parts):
        raise errors.InvalidArgument(f"invalid user {':'.join(parts)!r}")
    files = _Files(read_file)
    entry = _resolve_user(parts[0], files)
    gid = _resolve_group(parts[1], files) if len(parts) == 2 else entry.gid
    groups = [gid, *(_checked_id(g, "supplemental group") for g in sc.supplemental_groups)]
    if sc.supplemental_groups_policy == api_pb2.Merge and entry.name:
        groups += files.memberships(entry.name)
    return ProcessUser(
        uid=entry.uid, gid=gid, additional_gids=_sorted_ids(groups), username=entry.name
    )

"""Process identity: user precedence, /etc/passwd and /etc/group, Merge vs Strict."""

from __future__ import annotations

from typing import Any

import pytest

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci.user import ProcessUser, parse_group, parse_passwd, resolve_process_user
from tests.unit.cri.oci.helpers import image_files


def _sc(**kwargs: Any) -> api_pb2.LinuxContainerSecurityContext:
    for key in ("run_as_user", "run_as_group"):
        if key in kwargs:
            kwargs[key] = api_pb2.Int64Value(value=kwargs[key])
    return api_pb2.LinuxContainerSecurityContext(**kwargs)


@pytest.mark.parametrize(
    ("sc", "image_user", "expected"),
    [
        # Nothing anywhere: root, with root's own group.
        (_sc(), "", (0, 0, (0,), "root")),
        # Image USER forms.
        (_sc(), "www-data", (33, 33, (29, 33), "www-data")),
        (_sc(), "1000", (1000, 1000, (1000, 50000), "default-user")),
        (_sc(), "1003:1004", (1003, 1004, (1004,), "")),
        (_sc(), "www-data:1004", (33, 1004, (29, 1004), "www-data")),
        # The own-named group is the primary group; with another primary it is not added.
        (_sc(), "1000:nogroup", (1000, 65534, (50000, 65534), "default-user")),
        # A uid without a passwd entry runs with group 0.
        (_sc(), "4242", (4242, 0, (0,), "")),
        # CRI run_as_user beats the image (and the image's group goes with it).
        (_sc(run_as_user=1001), "1003:1004", (1001, 0, (0,), "")),
        (_sc(run_as_user=65534), "", (65534, 65534, (65534,), "nobody")),
        # run_as_username beats run_as_user.
        (_sc(run_as_username="nobody", run_as_user=1001), "", (65534, 65534, (65534,), "nobody")),
        # run_as_group replaces the primary group.
        (_sc(run_as_user=1001, run_as_group=1002), "", (1001, 1002, (1002,), "")),
        (_sc(run_as_username="www-data", run_as_group=7), "", (33, 7, (7, 29), "www-data")),
        # run_as_user 0 is a real value, not "unset".
        (_sc(run_as_user=0), "www-data", (0, 0, (0,), "root")),
    ],
)
def test_user_precedence(
    sc: api_pb2.LinuxContainerSecurityContext,
    image_user: str,
    expected: tuple[int, int, tuple[int, ...], str],
) -> None:
    uid, gid, groups, name = expected
    user = resolve_process_user(sc, image_user, image_files())
    assert user == ProcessUser(uid=uid, gid=gid, additional_gids=groups, username=name)


def test_merge_adds_image_group_memberships() -> None:
    # critest SupplementalGroupsPolicy=Merge: uid 1000, groups 1000 + 1234 + 50000.
    sc = _sc(run_as_user=1000, supplemental_groups=[1234])
    user = resolve_process_user(sc, "", image_files())
    assert (user.uid, user.gid, user.additional_gids) == (1000, 1000, (1000, 1234, 50000))


def test_strict_keeps_only_what_was_given() -> None:
    sc = _sc(
        run_as_user=1000, supplemental_groups=[1234], supplemental_groups_policy=api_pb2.Strict
    )
    user = resolve_process_user(sc, "", image_files())
    assert (user.uid, user.gid, user.additional_gids) == (1000, 1000, (1000, 1234))


def test_supplemental_groups_are_sorted_and_unique() -> None:
    sc = _sc(supplemental_groups=[5678, 1234, 5678, 0])
    assert resolve_process_user(sc, "", image_files()).additional_gids == (0, 1234, 5678)


@pytest.mark.parametrize(
    ("sc", "image_user", "match"),
    [
        (_sc(run_as_username="ghost"), "", "user 'ghost' not found"),
        (_sc(), "ghost", "user 'ghost' not found"),
        (_sc(), "1000:ghosts", "group 'ghosts' not found"),
        (_sc(run_as_group=1002), "", "run_as_group is set without"),
        # Even when the image names a user: the group needs a CRI user (as containerd).
        (_sc(run_as_group=1002), "www-data", "run_as_group is set without"),
        (_sc(run_as_user=-1), "", "out of range"),
        (_sc(run_as_user=2**31), "", "out of range"),
        (_sc(supplemental_groups=[-5]), "", "out of range"),
        (_sc(), "a:b:c", "invalid user"),
        (_sc(), "1000:", "invalid user"),
    ],
)
def test_invalid_users(
    sc: api_pb2.LinuxContainerSecurityContext, image_user: str, match: str
) -> None:
    with pytest.raises(errors.InvalidArgument, match=match):
        resolve_process_user(sc, image_user, image_files())


def test_image_without_passwd() -> None:
    read = image_files({})
    assert resolve_process_user(_sc(run_as_user=7), "", read).gid == 0
    with pytest.raises(errors.InvalidArgument):
        resolve_process_user(_sc(run_as_username="nobody"), "", read)


def test_files_are_read_only_when_needed() -> None:
    asked: list[str] = []

    def read(path: str) -> bytes | None:
        asked.append(path)
        return None

    resolve_process_user(
        _sc(run_as_user=1, run_as_group=2, supplemental_groups_policy=api_pb2.Strict), "", read
    )
    assert asked == ["/etc/passwd"]


def test_parsers_skip_malformed_lines() -> None:
    users = parse_passwd(b"a:x:1:2::/:/bin/sh\nb:x:notanumber:2\nc:x:3\n\n#d:x:4:4\n")
    assert [(u.name, u.uid, u.gid) for u in users] == [("a", 1, 2)]
    groups = parse_group(b"g:x:5:a, b,,c\nh:x:6\nbad:x:z:a\n")
    assert [(g.name, g.gid, g.members) for g in groups] == [("g", 5, ("a", "b", "c")), ("h", 6, ())]


def test_first_passwd_entry_wins() -> None:
    read = image_files({"/etc/passwd": b"one:x:5:5::/:/bin/sh\ntwo:x:5:6::/:/bin/sh\n"})
    assert resolve_process_user(_sc(run_as_user=5), "", read).username == "one"

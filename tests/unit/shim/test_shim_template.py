"""The template: which mappings it marks mergeable for KSM, and what its spawn path runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shim import template
from tests.unit.shim import fresh

MAPS = """\
00400000-00420000 r--p 00000000 fe:01 1234   /usr/bin/python3.11
00906000-00a44000 rw-p 00505000 fe:01 1234   /usr/bin/python3.11
00a44000-00a6a000 rw-p 00000000 00:00 0
0157c000-01a4c000 rw-p 00000000 00:00 0      [heap]
7f00a0000000-7f00a0100000 rw-p 00000000 00:00 0
7f00a0200000-7f00a0300000 rw-s 00000000 00:05 77    /dev/zero (deleted)
7f00a0400000-7f00a0401000 r-xp 00000000 fe:01 99    /usr/lib/x86_64-linux-gnu/libc.so.6
7f00a0402000-7f00a0404000 rw-p 001d4000 fe:01 99    /usr/lib/x86_64-linux-gnu/libc.so.6
7f00a0500000-7f00a0510000 rw-p 00000000 00:00 0      /tmp/with space/x (deleted)
7ffd3220e000-7ffd3222f000 rw-p 00000000 00:00 0      [stack]
7ffd3227a000-7ffd3227e000 r--p 00000000 00:00 0      [vvar]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]
"""


def test_private_writable_mappings_but_not_the_stack_or_shared_ones() -> None:
    assert template.mergeable_ranges(MAPS) == [
        (0x00906000, 0x00A44000),  # the interpreter's data segment
        (0x00A44000, 0x00A6A000),  # its bss
        (0x0157C000, 0x01A4C000),  # [heap]
        (0x7F00A0000000, 0x7F00A0100000),  # an anonymous arena
        (0x7F00A0402000, 0x7F00A0404000),  # libc's data
        (0x7F00A0500000, 0x7F00A0510000),
    ]


def test_nothing_in_empty_or_odd_text() -> None:
    assert template.mergeable_ranges("") == []
    assert template.mergeable_ranges("garbage\n00400000-00420000\n") == []


SPAWN_CALLS = textwrap.dedent(
    """
    import json, os, signal, socket, sys
    from shim import daemon, protocol, template

    template._warm()
    me, calls = os.getpid(), set()

    def record(frame, event, arg):
        if event == "call" and os.getpid() == me:  # not the intermediate or the shim
            calls.add(frame.f_code.co_filename)

    pids = []
    for i in range(2):  # the second one traced
        ours, theirs = socket.socketpair()
        spec = {"id": f"{i:064x}", "state_dir": f"{sys.argv[1]}/{sys.argv[2]}s{i}"}
        ours.sendall(protocol.encode({"id": i, "method": "spawn", "params": spec}))
        sys.setprofile(record if i else None)
        try:
            daemon.serve_spawn(theirs.fileno())
        finally:
            sys.setprofile(None)
        answer = protocol.take_message(bytearray(ours.recv(4096)), 4096)
        pids.append(answer["result"]["pid"])
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    print(json.dumps(sorted(calls)))
    """
)


@pytest.mark.parametrize("socket_path", ["short", "too long for sun_path"])
def test_a_spawn_runs_no_standard_library_code_in_the_template(
    tmp_path: Path, socket_path: str
) -> None:
    """Every page the template writes while serving a spawn becomes a private page of the
    shim it forked last (see shim.daemon): the spawn path calls C functions and berth's own
    code only, no Python code of the standard library (contextlib, pathlib, socket's
    Python layer...). Also when the shim's socket path is too long to bind directly."""
    nested = "d" * 120 + "/" if socket_path != "short" else ""
    files, _ = fresh.run(SPAWN_CALLS, str(tmp_path), nested)
    assert f"{fresh.SHIM_DIR}/daemon.py" in files
    assert [f for f in files if not f.startswith(fresh.SHIM_DIR + "/")] == []

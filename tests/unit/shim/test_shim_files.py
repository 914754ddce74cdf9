"""State files, exit files, cgroup/OOM parsing, mount options, exec process specs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from shim import api, cleanup, execs, exitfile, mount, oom, state, workers


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    state.write_atomic(path, b"one")
    state.write_atomic(path, b"two", durable=False)
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f.json"]


def test_pid_file(tmp_path: Path) -> None:
    assert state.read_pid(tmp_path) is None
    (tmp_path / state.PID).write_text("garbage")
    assert state.read_pid(tmp_path) is None
    (tmp_path / state.PID).write_text(f"{os.getpid()}\n")
    assert state.read_pid(tmp_path) == os.getpid()
    assert state.pid_alive(os.getpid())
    assert not state.pid_alive(2**22 + 1)


def test_long_socket_paths_are_reachable(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    path = deep / "shim.sock"
    assert len(str(path)) > 108
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as cl:
        with state.socket_path(path) as name:
            server.bind(name)
        server.listen()
        assert path.exists()
        with state.socket_path(path) as name:
            cl.connect(name)


def test_exit_file_round_trip(tmp_path: Path) -> None:
    assert exitfile.read(tmp_path) is None
    status = exitfile.ExitStatus(
        pid=4, exit_code=137, started_at_ns=1, finished_at_ns=2, oom_killed=True, reason="OOMKilled"
    )
    exitfile.write(tmp_path, status)
    assert exitfile.read(tmp_path) == status
    st = exitfile.to_task_state("c1", status)
    assert (st.status, st.exit_code, st.oom_killed, st.reason) == (
        api.STOPPED,
        137,
        True,
        "OOMKilled",
    )
    (tmp_path / state.EXIT).write_text("{not json")
    assert exitfile.read(tmp_path) is None
    (tmp_path / state.EXIT).write_text('{"pid": "x"}')
    assert exitfile.read(tmp_path) is None


HYBRID = """12:memory:/process_api/abc/berth-test/c1
4:cpu,cpuacct:/berth-test/c1
1:name=systemd:/
0::/
"""
V2 = "0::/kubepods/pod1/c1\n"
MOUNTINFO = """25 30 0:22 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
32 25 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
40 25 0:35 / /sys/fs/cgroup/memory rw,nosuid shared:17 - cgroup cgroup rw,memory
"""
V2_MOUNTINFO = "30 25 0:27 / /sys/fs/cgroup rw shared:10 - cgroup2 cgroup2 rw\n"


def test_hybrid_uses_the_v1_memory_hierarchy() -> None:
    paths = oom.parse_proc_cgroup(HYBRID)
    assert paths == oom.CgroupPaths(v1_memory="/process_api/abc/berth-test/c1", v2="/")
    found = oom.resolve(paths, MOUNTINFO)
    assert found == Path("/sys/fs/cgroup/memory/process_api/abc/berth-test/c1")


def test_v2_needs_memory_events(tmp_path: Path) -> None:
    paths = oom.parse_proc_cgroup(V2)
    assert oom.resolve(paths, V2_MOUNTINFO) is None  # no memory.events on this machine
    cg = tmp_path / "kubepods" / "pod1" / "c1"
    cg.mkdir(parents=True)
    (cg / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    mi = f"30 25 0:27 / {tmp_path} rw shared:10 - cgroup2 cgroup2 rw\n"
    assert oom.resolve(paths, mi) == cg
    assert oom.oom_kill_count(cg) == 1


def test_mount_root_outside_the_cgroup_namespace() -> None:
    mi = "40 25 0:35 /other /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    assert oom.resolve(oom.CgroupPaths(v1_memory="/process_api/x", v2=None), mi) is None
    mi = "40 25 0:35 /process_api /mnt/mem rw - cgroup cgroup rw,memory\n"
    found = oom.resolve(oom.CgroupPaths(v1_memory="/process_api/x", v2=None), mi)
    assert found == Path("/mnt/mem/x")


def test_v1_oom_control(tmp_path: Path) -> None:
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    assert oom.oom_kill_count(tmp_path) == 0
    assert oom.oom_kill_count(tmp_path / "missing") is None


def test_mount_options() -> None:
    o = mount.parse_options(["rbind", "ro", "nosuid", "rprivate", "size=10m", "mode=755"])
    assert o.flags == mount.MS_BIND | mount.MS_REC | mount.MS_RDONLY | mount.MS_NOSUID
    assert o.propagation == mount.MS_PRIVATE | mount.MS_REC
    assert o.data == "size=10m,mode=755"
    assert mount.parse_options(["ro", "rw"]).flags == 0
    assert (
        mount.parse_options(["lowerdir=/a:/b", "upperdir=/u"]).data == "lowerdir=/a:/b,upperdir=/u"
    )


def test_exec_process_spec_inherits_the_container_process() -> None:
    base = {
        "args": ["sleep", "1"],
        "env": ["PATH=/bin", "A=1"],
        "cwd": "/",
        "user": {"uid": 5, "gid": 5},
        "capabilities": {"bounding": ["CAP_KILL"]},
        "terminal": False,
        "consoleSize": {"height": 1, "width": 1},
    }
    spec = execs.process_spec(base, args=["sh"], env=["A=2", "B=3"], cwd="/tmp", tty=True)
    assert spec["args"] == ["sh"] and spec["terminal"] is True and spec["cwd"] == "/tmp"
    assert spec["env"] == ["PATH=/bin", "A=2", "B=3"]
    assert spec["user"] == base["user"] and spec["capabilities"] == base["capabilities"]
    assert "consoleSize" not in spec
    assert base["args"] == ["sleep", "1"]  # not modified
    same = execs.process_spec(base, args=["true"], env=(), cwd="", tty=False)
    assert same["env"] == base["env"] and same["cwd"] == "/"


@pytest.mark.parametrize("code,status", [(0, 0), (3, 3 << 8), (137, 9), (143, 15)])
def test_exit_codes_of_wait_statuses(code: int, status: int) -> None:
    from shim import procs

    assert procs.exit_code_of(status) == code


def test_atomic_write_of_a_bare_file_name_stays_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    opened: list[str] = []
    real_open = os.open

    def recording_open(path: str, *args: int) -> int:
        opened.append(os.fspath(path))
        return real_open(path, *args)

    monkeypatch.setattr(os, "open", recording_open)
    state.write_atomic("plain.json", b"{}")
    assert (tmp_path / "plain.json").read_bytes() == b"{}"
    assert opened[0] == "./.plain.json.tmp", opened  # not /.plain.json.tmp


def test_stale_cgroup_mounts_are_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mounts are read once and kept (the template warms them for its shims); a kept
    answer that no longer leads to a cgroup directory is replaced by a fresh read."""
    fresh = oom.memory_cgroup_of(os.getpid())
    if fresh is None:
        pytest.skip("this process has no memory cgroup this machine can resolve")
    gone = oom.MountPoint(root="/", path="/nonexistent/cgroup")
    monkeypatch.setattr(oom, "_mounts", (gone, gone))
    assert oom.memory_cgroup_of(os.getpid()) == fresh
    assert oom.cgroup_mounts() != (gone, gone)


@pytest.mark.parametrize("garbled", [b"", b'{"rootfs": "/x", "mou', b"[1, 2]"])
def test_cleanup_copes_with_a_task_file_cut_short(tmp_path: Path, garbled: bytes) -> None:
    """task.json is not fsynced (after a power loss nothing it names is mounted): cleaning
    up after a dead shim must not trip over one that is empty or cut short."""
    (tmp_path / state.TASK).write_bytes(garbled)
    status = cleanup.delete(
        state_dir=tmp_path, runtime="/bin/false", runtime_root=str(tmp_path / "r"), id="c1"
    )
    assert status.exit_code == 255
    assert not (tmp_path / state.TASK).exists()


@pytest.mark.parametrize(
    ("namespaces", "shared"),
    [
        ([{"type": "pid"}, {"type": "mount"}], False),  # its own
        ([{"type": "pid", "path": "/proc/42/ns/pid"}], True),  # the pod's
        ([{"type": "mount"}], True),  # the host's
    ],
)
def test_shares_pid_namespace(namespaces: list[dict[str, str]], shared: bool) -> None:
    assert workers.shares_pid_namespace({"linux": {"namespaces": namespaces}}) is shared

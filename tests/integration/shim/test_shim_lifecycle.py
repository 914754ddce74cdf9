"""Container life cycle through a real shim and runc: create, start, exit, kill, OOM, delete."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from shim import api, client, errors, exitfile, oom, state
from tests.integration.shim import bundle
from tests.integration.shim.conftest import Env

pytestmark = [pytest.mark.root, pytest.mark.runc]


async def test_exit_code_is_on_disk_before_wait_returns(env: Env) -> None:
    c, _ = await env.running(["sh", "-c", "exit 3"])
    st = await c.wait(10)
    recorded = json.loads((c.state_dir / "exit.json").read_text())
    assert st.status == api.STOPPED and st.exit_code == 3
    assert recorded["exit_code"] == 3
    assert recorded["finished_at_ns"] == st.finished_at_ns >= st.started_at_ns > 0
    assert not st.oom_killed and st.reason == ""
    final = await c.delete()
    assert final.exit_code == 3
    assert (c.state_dir / "exit.json").exists()
    assert not (c.state_dir / "shim.sock").exists()


async def test_states_before_and_after_start(env: Env) -> None:
    c = await env.spawn()
    with pytest.raises(errors.NotFound):
        await c.state()
    created = await c.create(env.params(c.id, ["sleep", "1000"]))
    assert created.status == api.CREATED and created.pid > 0
    with pytest.raises(errors.AlreadyExists):
        await c.create(env.params(c.id, ["true"]))
    running = await c.start()
    assert running.status == api.RUNNING and running.started_at_ns > 0
    with pytest.raises(errors.FailedPrecondition):
        await c.start()
    with pytest.raises(errors.DeadlineExceeded):
        await c.wait(0.05)


async def test_sigkill_gives_137_and_kill_is_idempotent(env: Env) -> None:
    c, _ = await env.running(["sleep", "1000"])
    await c.kill(signal.SIGKILL)
    st = await c.wait(10)
    assert st.exit_code == 137
    await c.kill(signal.SIGKILL)  # stopped: nothing to do, no error


async def test_sigterm_gives_143(env: Env) -> None:
    # Outside a PID namespace the process is not an init, so SIGTERM's default action kills it.
    c, _ = await env.running(["sleep", "1000"], pid_ns=False)
    await c.kill(signal.SIGTERM)
    assert (await c.wait(10)).exit_code == 143


async def test_kill_all_processes(env: Env) -> None:
    c, _ = await env.running(["sh", "-c", "sleep 1000 & sleep 1000"])
    await c.kill(signal.SIGKILL, all=True)
    assert (await c.wait(10)).exit_code == 137


async def test_kill_a_created_container(env: Env) -> None:
    c = await env.spawn()
    await c.create(env.params(c.id, ["sleep", "1000"]))
    await c.kill(signal.SIGKILL)
    st = await c.wait(10)
    assert st.status == api.STOPPED and st.exit_code == 137 and st.started_at_ns == 0


async def test_oom_kill_is_reported(env: Env) -> None:
    c, _ = await env.running(["tail", "/dev/zero"], memory_limit=8 << 20)
    st = await c.wait(30)
    assert st.exit_code == 137
    assert st.oom_killed and st.reason == api.REASON_OOM
    assert exitfile.read(c.state_dir) == exitfile.ExitStatus(
        pid=st.pid,
        exit_code=137,
        started_at_ns=st.started_at_ns,
        finished_at_ns=st.finished_at_ns,
        oom_killed=True,
        reason=api.REASON_OOM,
    )


async def test_delete_running_container_kills_it(env: Env) -> None:
    c, p = await env.running(["sleep", "1000"])
    pid = (await c.state()).pid
    t0 = time.perf_counter()
    st = await c.delete()
    elapsed = time.perf_counter() - t0
    assert st.exit_code == 137
    assert not state.pid_alive(pid)
    assert not bundle.is_mounted(Path(p.bundle, "rootfs"))
    assert not bundle.exists(Path(p.runtime_root, c.id))
    # kill + reap + delete, not runc's 100 ms `delete --force` poll.
    print(f"delete of a running container: {elapsed * 1000:.1f} ms")


async def assert_no_task(c: client.ShimClient, p: api.CreateParams) -> None:
    """A failed create left nothing: no rootfs mount, no runc state, no task in the shim."""
    assert not bundle.is_mounted(Path(p.bundle, "rootfs"))
    assert not bundle.exists(Path(p.runtime_root, c.id))
    with pytest.raises(errors.NotFound):
        await c.state()


async def test_failed_create_leaves_nothing(env: Env) -> None:
    c = await env.spawn()
    p = env.params(c.id, ["/no/such/binary"])
    with pytest.raises(errors.FailedPrecondition, match="no/such/binary"):
        await c.create(p)
    await assert_no_task(c, p)
    await c.delete()


async def test_a_log_file_that_cannot_be_made_undoes_the_create(env: Env) -> None:
    """The keeper opens the log once runc has created the container (its worker checks the
    request first): when it cannot, the container is deleted again and nothing is left."""
    c = await env.spawn()
    p = env.params(c.id, ["sleep", "1000"], log_path=str(env.base / "no-dir" / "c.log"))
    with pytest.raises(errors.FailedPrecondition, match="log file"):
        await c.create(p)
    await assert_no_task(c, p)
    p = env.params(c.id, ["sleep", "1000"])
    assert (await c.create(p)).status == api.CREATED  # the shim is still usable
    await c.delete()


async def test_missing_runtime_is_unavailable(env: Env) -> None:
    c = await env.spawn()
    p = env.params(c.id, ["true"])
    p = api.CreateParams(**{**api.to_wire(p), "runtime": "/no/runc", "rootfs_mounts": ()})
    with pytest.raises(errors.Unavailable, match="/no/runc"):
        await c.create(p)


async def test_update_resources(env: Env) -> None:
    c, _ = await env.running(["sleep", "1000"])
    cgroup = oom.memory_cgroup_of((await c.state()).pid)
    assert cgroup is not None
    await c.update({"memory": {"limit": 64 << 20}})
    v1 = cgroup / "memory.limit_in_bytes"
    limit = (v1 if v1.exists() else cgroup / "memory.max").read_text().strip()  # v1 or v2
    assert int(limit) == 64 << 20


async def test_many_waiters_and_concurrent_calls(env: Env) -> None:
    import asyncio

    c, _ = await env.running(["sleep", "1000"])
    waiters = [asyncio.ensure_future(c.wait()) for _ in range(5)]
    assert (await c.state()).status == api.RUNNING
    await c.kill(signal.SIGKILL)
    states = await asyncio.gather(*waiters)
    assert {s.exit_code for s in states} == {137}


def test_exit_file_survives_for_a_restarted_berthd(tmp_path: Path) -> None:
    # exit.json alone is enough to recover the exit: no shim needed.
    status = exitfile.ExitStatus(pid=5, exit_code=2, finished_at_ns=9)
    exitfile.write(tmp_path, status)
    assert exitfile.read(tmp_path) == status
    out = subprocess.run(["cat", str(tmp_path / "exit.json")], capture_output=True, check=True)
    assert json.loads(out.stdout)["exit_code"] == 2

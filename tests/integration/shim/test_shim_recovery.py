"""Shims outlive their spawner: berthd restarts, template death, `berth-shim delete`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shim import api, client, errors, exitfile, launcher, protocol, state
from tests.integration.shim import bundle
from tests.integration.shim.conftest import Env

pytestmark = [pytest.mark.root, pytest.mark.runc]


async def wait_gone(pid: int) -> None:
    assert await client.wait_process_gone(pid, 10)


async def test_spawn_latency_from_template(env: Env) -> None:
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        c = await env.spawn()
        times.append(time.perf_counter() - t0)
        assert (await c.info()).pid == c.pid
        assert os.stat(c.state_dir / "shim.sock").st_mode & 0o777 == 0o600
    p50 = statistics.median(times) * 1000
    print(f"spawn via template: p50 {p50:.1f} ms, max {max(times) * 1000:.1f} ms")
    for c in env.clients:
        await c.delete()  # no task: the shim just exits
        assert not state.pid_alive(c.pid)


async def test_reconnect_after_berthd_restart_sees_exit(env: Env) -> None:
    c, _ = await env.running(["sleep", "1000"])
    init = (await c.state()).pid
    await c.close()  # berthd goes away; the shim stays
    os.kill(init, signal.SIGKILL)
    await wait_gone(init)  # the exit happens while nobody listens
    again = await client.connect(c.state_dir)
    assert again.id == c.id and again.pid == c.pid
    st = await again.wait(10)
    assert st.exit_code == 137 and st.status == api.STOPPED
    assert exitfile.read(c.state_dir) is not None
    await again.delete()


async def test_connect_errors(env: Env, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound):
        await client.connect(tmp_path / "nothing")
    c = await env.spawn()
    pid = c.pid
    await c.delete()
    (c.state_dir / "shim.pid").write_text(f"{pid}\n")  # stale pid file
    with pytest.raises(errors.Unavailable):
        await client.connect(c.state_dir)


async def test_malformed_frame_closes_only_that_connection(env: Env) -> None:
    c = await env.spawn()
    reader, writer = await asyncio.open_unix_connection(str(c.state_dir / "shim.sock"))
    writer.write((protocol.MAX_REQUEST + 1).to_bytes(4, "big") + b"{}")
    assert await reader.read() == b""  # closed by the shim
    writer.close()
    reader, writer = await asyncio.open_unix_connection(str(c.state_dir / "shim.sock"))
    writer.write(protocol.encode({"id": 1, "method": "nope"}))
    reply = await protocol.read_message(reader, protocol.MAX_RESPONSE)
    assert reply is not None and reply["error"]["kind"] == "invalid_argument"
    writer.close()
    assert (await c.info()).id == c.id


async def test_shim_survives_template_death(env: Env) -> None:
    c, _ = await env.running(["sleep", "1000"])
    template_pid = env.launcher.pid
    os.kill(template_pid, signal.SIGKILL)
    await wait_gone(template_pid)
    assert (await c.state()).status == api.RUNNING
    # The next spawn starts a new template.
    c2 = await env.spawn()
    assert env.launcher.pid != template_pid
    assert (await c2.info()).id == c2.id
    # Also when the spawn comes before anybody noticed the death.
    second = env.launcher.pid
    os.kill(second, signal.SIGKILL)
    c3 = await env.spawn()
    assert env.launcher.pid not in (template_pid, second)
    assert (await c3.info()).id == c3.id


async def test_direct_spawn_without_template(env: Env, tmp_path: Path) -> None:
    cid = env.new_id()
    env.state_dirs.append((cid, tmp_path / f"s-{cid}"))
    t0 = time.perf_counter()
    c = await launcher.spawn_direct(api.ShimSpec(id=cid, state_dir=tmp_path / f"s-{cid}"))
    print(f"direct spawn: {(time.perf_counter() - t0) * 1000:.1f} ms")
    env.clients.append(c)
    await c.create(env.params(cid, ["sh", "-c", "exit 2"]))
    await c.start()
    assert (await c.wait(10)).exit_code == 2


async def test_second_shim_for_the_same_state_dir_is_refused(env: Env) -> None:
    c = await env.spawn()
    with pytest.raises(errors.AlreadyExists):
        await env.launcher.spawn(api.ShimSpec(id=c.id, state_dir=c.state_dir))
    assert (await c.info()).pid == c.pid


BERTHD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from shim import api, launcher

    async def main():
        lau = await launcher.Launcher.start(Path(sys.argv[1]))
        c = await lau.spawn(api.ShimSpec(id=sys.argv[2], state_dir=Path(sys.argv[3])))
        print(lau.pid, c.pid, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_shim_survives_berthd_death_and_template_follows_it(env: Env, tmp_path: Path) -> None:
    cid = env.new_id()
    state_dir = tmp_path / f"s-{cid}"
    env.state_dirs.append((cid, state_dir))
    berthd = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        BERTHD,
        str(tmp_path / "tpl2"),
        cid,
        str(state_dir),
        stdout=asyncio.subprocess.PIPE,
    )
    assert berthd.stdout is not None
    template_pid, shim_pid = map(int, (await berthd.stdout.readline()).split())
    berthd.kill()
    await berthd.wait()
    await wait_gone(template_pid)  # PR_SET_PDEATHSIG
    c = await client.connect(state_dir)
    env.clients.append(c)
    assert c.pid == shim_pid
    await c.create(env.params(cid, ["true"]))


def run_delete(state_dir: Path, runtime_root: str, cid: str) -> subprocess.CompletedProcess[str]:
    argv = launcher.bootstrap_argv(sys.executable, "delete", "--state-dir", str(state_dir))
    argv += ["--runtime", "runc", "--runtime-root", runtime_root, "--id", cid]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


async def test_berth_shim_delete_after_shim_sigkill(env: Env) -> None:
    c, p = await env.running(["sleep", "1000"])
    init = (await c.state()).pid
    refused = await asyncio.to_thread(run_delete, c.state_dir, p.runtime_root, c.id)
    assert refused.returncode == 1 and "alive" in refused.stderr
    os.kill(c.pid, signal.SIGKILL)
    await wait_gone(c.pid)
    assert state.pid_alive(init)  # the container outlives its shim
    done = await asyncio.to_thread(run_delete, c.state_dir, p.runtime_root, c.id)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["exit_code"] == exitfile.UNKNOWN_EXIT_CODE and status["reason"] == "Unknown"
    assert not state.pid_alive(init)
    assert not bundle.is_mounted(Path(p.bundle, "rootfs"))
    assert not bundle.exists(Path(p.runtime_root, c.id))
    assert exitfile.read(c.state_dir) is not None
    again = await asyncio.to_thread(run_delete, c.state_dir, p.runtime_root, c.id)
    assert again.returncode == 0 and json.loads(again.stdout) == status  # idempotent


async def test_berth_shim_delete_keeps_a_recorded_exit(env: Env) -> None:
    c, p = await env.running(["sh", "-c", "exit 4"])
    await c.wait(10)
    os.kill(c.pid, signal.SIGKILL)
    await wait_gone(c.pid)
    done = await asyncio.to_thread(run_delete, c.state_dir, p.runtime_root, c.id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["exit_code"] == 4
    assert not bundle.is_mounted(Path(p.bundle, "rootfs"))


@pytest.mark.parametrize(
    ("method", "params", "kind"),
    [
        ("spawn", {"id": "../etc", "state_dir": "{tmp}/x"}, "invalid_argument"),
        ("spawn", {"id": "ok1", "state_dir": "relative/x"}, "invalid_argument"),
        ("spawn", {"id": "ok1"}, "invalid_argument"),
        ("spawn", {"id": 7, "state_dir": "{tmp}/x"}, "invalid_argument"),
        ("spawn", ["ok1", "{tmp}/x"], "invalid_argument"),
        ("fork", {"id": "ok1", "state_dir": "{tmp}/x"}, "invalid_argument"),
    ],
)
async def test_template_refuses_a_bad_request(
    env: Env, tmp_path: Path, method: str, params: object, kind: str
) -> None:
    reader, writer = await asyncio.open_unix_connection(
        str(env.launcher.template_dir / "template.sock")
    )
    params = json.loads(json.dumps(params).replace("{tmp}", str(tmp_path)))
    writer.write(protocol.encode({"id": "x", "method": method, "params": params}))
    reply = await protocol.read_message(reader, protocol.MAX_RESPONSE)
    writer.close()
    assert reply is not None and reply["id"] == "x" and reply["error"]["kind"] == kind
    assert not (tmp_path / "x").exists()  # nothing set up
    assert (await env.spawn()).pid > 0  # the template carries on


@pytest.mark.parametrize(
    "data", [b"\x00\x00\x00\x05{oops", b"\x00\x00\x00\x02[]", b"\xff\xff\xff\xff"]
)
async def test_template_answers_a_garbled_frame_and_carries_on(env: Env, data: bytes) -> None:
    reader, writer = await asyncio.open_unix_connection(
        str(env.launcher.template_dir / "template.sock")
    )
    writer.write(data)
    reply = await protocol.read_message(reader, protocol.MAX_RESPONSE)
    writer.close()
    assert reply is not None and reply["error"]["kind"] == "internal"
    assert (await env.spawn()).pid > 0


async def test_template_gives_up_on_a_silent_client(env: Env) -> None:
    reader, writer = await asyncio.open_unix_connection(
        str(env.launcher.template_dir / "template.sock")
    )
    writer.write(b"\x00\x00")  # half a frame header, then nothing
    reply = await asyncio.wait_for(protocol.read_message(reader, protocol.MAX_RESPONSE), 15)
    writer.close()
    assert reply is not None and reply["error"]["kind"] == "deadline_exceeded"
    assert (await env.spawn()).pid > 0

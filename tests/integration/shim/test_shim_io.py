"""Container IO through a real shim: CRI logs, exec, attach, log reopening."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import pytest

from shim import api, client, errors
from tests.integration.shim import bundle
from tests.integration.shim.conftest import Env

pytestmark = [pytest.mark.root, pytest.mark.runc]

_RECORD = re.compile(rb"^(\S+) (stdout|stderr) ([PF]) (.*)$", re.S)


def read_log(path: str | Path) -> dict[str, list[bytes]]:
    """Lines per stream, P records joined to the next; an unterminated tail last."""
    lines: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    for record in Path(path).read_bytes().split(b"\n")[:-1]:
        m = _RECORD.match(record)
        assert m, record[:100]
        stream, tag, content = m.group(2).decode(), m.group(3), m.group(4)
        assert len(content) <= 16 * 1024
        if tag == b"P":
            partial[stream] += content
        else:
            lines[stream].append(partial[stream] + content)
            partial[stream] = b""
    for stream, rest in partial.items():
        if rest:
            lines[stream].append(rest)
    return lines


def read_raw(path: str) -> bytes:
    return Path(path).read_bytes()


async def collect(stream: client.ShimStream, until: bytes | None = None) -> dict[int, bytes]:
    """Read frames until the end (or until `until` appears in stdout)."""
    out: dict[int, bytes] = {api.CH_STDOUT: b"", api.CH_STDERR: b""}
    async with asyncio.timeout(20):
        while (frame := await stream.read()) is not None:
            out[frame[0]] += frame[1]
            if until is not None and until in out[api.CH_STDOUT]:
                break
    return out


LOG_SCRIPT = r"""
seq 1 50000
i=0; while [ $i -lt 3 ]; do head -c 40000 /dev/zero | tr '\0' x; echo; i=$((i+1)); done
head -c 16384 /dev/zero | tr '\0' y; echo
seq 50001 100000
seq 1 10 >&2
printf 'crlf\r\n'
printf tail
"""


async def test_cri_log_of_100000_lines(env: Env) -> None:
    c, p = await env.running(["sh", "-c", LOG_SCRIPT])
    assert (await c.wait(60)).exit_code == 0
    logged = read_log(p.log_path)
    expected = [str(i).encode() for i in range(1, 50001)]
    expected += [b"x" * 40000] * 3 + [b"y" * 16384]
    expected += [str(i).encode() for i in range(50001, 100001)]
    expected += [b"crlf", b"tail"]
    assert logged["stdout"] == expected
    assert logged["stderr"] == [str(i).encode() for i in range(1, 11)]
    raw = read_raw(p.log_path)
    assert raw.count(b" stdout P ") == 3 * 2 + 1  # 40000 = 2 x 16 KiB + rest; "tail"
    stdout_records = [r for r in raw.split(b"\n") if b" stdout " in r]
    assert stdout_records[-1].endswith(b" stdout P tail")


async def test_exec_sync_output_and_exit_code(env: Env) -> None:
    c, _ = await env.running(["sleep", "1000"])
    r = await c.exec_sync(["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert (r.stdout, r.stderr, r.exit_code, r.timed_out) == (b"out\n", b"err\n", 5, False)
    r = await c.exec_sync(["sh", "-c", "echo $FOO; pwd"], env=["FOO=bar"], cwd="/tmp")
    assert r.stdout == b"bar\n/tmp\n"
    r = await c.exec_sync(["sh", "-c", "head -c 100000 /dev/zero; exit 2"], max_output=1000)
    assert (len(r.stdout), r.exit_code) == (1000, 2)


async def test_exec_sync_timeout(env: Env) -> None:
    c, _ = await env.running(["sleep", "1000"])
    t0 = time.monotonic()
    r = await c.exec_sync(["sleep", "30"], timeout=0.5)
    assert r.timed_out and r.exit_code == 137
    assert time.monotonic() - t0 < 5
    await c.kill(signal.SIGKILL)
    await c.wait(10)
    with pytest.raises(errors.FailedPrecondition):
        await c.exec_sync(["true"])


async def test_exec_stream_pipes(env: Env) -> None:
    c, _ = await env.running(["sleep", "1000"])
    params = api.ExecStreamParams(args=("sh", "-c", "cat; echo bye >&2; exit 4"), stdin=True)
    s = await c.exec_stream(params)
    await s.write_stdin(b"hello\n")
    await s.close_stdin()
    out = await collect(s)
    assert out == {api.CH_STDOUT: b"hello\n", api.CH_STDERR: b"bye\n"}
    assert await s.wait_exit() == 4
    await s.close()


async def test_exec_stream_tty_and_resize(env: Env) -> None:
    c, _ = await env.running(["sleep", "1000"])
    s = await c.exec_stream(api.ExecStreamParams(args=("sh",), tty=True, stdin=True))
    await s.resize(100, 40)
    await s.write_stdin(b"stty size; exit 5\n")
    out = await collect(s)
    assert b"40 100" in out[api.CH_STDOUT]
    assert out[api.CH_STDERR] == b""
    assert await s.wait_exit() == 5
    await s.close()


async def _processes(c: client.ShimClient) -> bytes:
    return (await c.exec_sync(["ps", "-o", "args"])).stdout


async def test_exec_stream_disconnect_kills_the_process(env: Env) -> None:
    c, _ = await env.running(["sleep", "2000"])
    s = await c.exec_stream(api.ExecStreamParams(args=("sleep", "1001")))
    assert b"sleep 1001" in await _processes(c)
    await s.close()
    # Nothing outside the container signals that process's end: poll, bounded.
    async with asyncio.timeout(5):
        while b"sleep 1001" in await _processes(c):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert b"sleep 2000" in await _processes(c)


async def test_exec_error_is_reported(env: Env) -> None:
    c, _ = await env.running(["sleep", "1000"])
    with pytest.raises(errors.FailedPrecondition, match="nope"):
        await c.exec_stream(api.ExecStreamParams(args=("/nope",)))
    with pytest.raises(errors.InvalidArgument):
        await c.exec_stream(api.ExecStreamParams(args=()))


ECHO_LOOP = 'while read l; do echo "got $l"; echo "err $l" >&2; done; exit 7'


async def test_attach_with_two_attachers(env: Env) -> None:
    c, p = await env.running(["sh", "-c", ECHO_LOOP], stdin=True, stdin_once=True)
    a1 = await c.attach(api.AttachParams(stdin=True))
    a2 = await c.attach(api.AttachParams(stdin=False, stderr=False))
    await a1.write_stdin(b"one\n")
    seen1 = await collect(a1, until=b"got one\n")
    seen2 = await collect(a2, until=b"got one\n")
    assert seen1[api.CH_STDOUT] == seen2[api.CH_STDOUT] == b"got one\n"
    await a1.close_stdin()  # stdin_once: the container's stdin closes, the loop ends
    assert await a1.wait_exit() == 7
    assert await a2.wait_exit() == 7
    logged = read_log(p.log_path)
    assert logged == {"stdout": [b"got one"], "stderr": [b"err one"]}
    for a in (a1, a2):
        await a.close()


async def test_tty_container_attach(env: Env) -> None:
    c, p = await env.running(["sh"], tty=True, stdin=True)
    a = await c.attach(api.AttachParams(stdin=True, stderr=False))
    await a.resize(100, 40)
    await a.write_stdin(b"stty size\n")
    await collect(a, until=b"40 100")
    await a.write_stdin(b"exit 6\n")
    assert await a.wait_exit() == 6
    assert (await c.wait(10)).exit_code == 6
    logged = read_log(p.log_path)
    assert logged["stderr"] == []
    assert any(b"40 100" in line for line in logged["stdout"])
    await a.close()


async def test_reopen_log(env: Env) -> None:
    c, p = await env.running(["sh", "-c", ECHO_LOOP], stdin=True)
    a = await c.attach(api.AttachParams(stdin=True))
    await a.write_stdin(b"one\n")
    await collect(a, until=b"got one\n")
    os.rename(p.log_path, p.log_path + ".1")
    await c.reopen_log()
    await a.write_stdin(b"two\n")
    await collect(a, until=b"got two\n")
    await a.close_stdin()
    await a.close()
    await c.kill(signal.SIGKILL)
    await c.wait(10)
    assert read_log(p.log_path + ".1")["stdout"] == [b"got one"]
    assert read_log(p.log_path)["stdout"] == [b"got two"]
    os.unlink(p.log_path)
    with pytest.raises(errors.FailedPrecondition):
        await c.reopen_log()
    assert not bundle.exists(p.log_path)


async def test_no_log_path(env: Env) -> None:
    c, _ = await env.running(["sh", "-c", "echo hi"], log_path="")
    assert (await c.wait(10)).exit_code == 0
    with pytest.raises(errors.FailedPrecondition):
        await c.reopen_log()

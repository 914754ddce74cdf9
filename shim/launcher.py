"""Starting shims from berthd: through the template, or by exec as a fallback.

    launcher = await Launcher.start(template_dir)     # once, from the event loop
    client = await launcher.spawn(ShimSpec(id=cid, state_dir=d))
    ...
    await launcher.close()                           # shims keep running

The template is exec'd (`python -I -S -c <bootstrap>`), never forked from
berthd: grpc does not survive fork. The bootstrap puts only the directory
that holds the `shim` package on sys.path; -I -S keep site-packages and
PYTHON* variables out. Start the launcher from the event loop's thread:
the template's parent death signal fires when the thread that forked it
ends.

If the template has died, `spawn` starts a new one; if that fails it execs
the shim directly (`berth-shim spawn`, ~20 ms and ~5 MB more per shim).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import shim
from shim import api, client, errors, protocol, state

SHIM_PACKAGE = str(Path(shim.__file__).resolve().parent)
SHIM_ROOT = str(Path(SHIM_PACKAGE).parent)
# ssl is blocked: the shim never speaks TLS, and asyncio would otherwise load
# OpenSSL (several MB of RSS in the template) just in case.
BOOTSTRAP = (
    f"import sys; sys.modules['ssl'] = None; sys.path.insert(0, {SHIM_ROOT!r}); "
    "from shim.main import main; sys.exit(main(sys.argv[1:]))"
)
START_TIMEOUT = 10.0
SPAWN_TIMEOUT = 10.0


def bootstrap_argv(python: str, *args: str) -> list[str]:
    """The command line that runs `berth-shim <args>` in an isolated interpreter."""
    return [python, "-I", "-S", "-c", BOOTSTRAP, *args]


class Launcher:
    """Owns the template process and spawns shims through it."""

    def __init__(self, proc: asyncio.subprocess.Process, template_dir: Path, python: str) -> None:
        self._proc = proc
        self.template_dir = template_dir
        self._python = python
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @classmethod
    async def start(cls, template_dir: Path, *, python: str = sys.executable) -> Launcher:
        """Exec the template and wait until it listens. Unavailable if it does not."""
        return cls(await _start_template(template_dir, python), template_dir, python)

    async def spawn(self, spec: api.ShimSpec, *, retry: bool = True) -> client.ShimClient:
        """Fork a shim for `spec` and return a client connected to it.

        A dead template is started again first; a shim is exec'd directly only
        when that fails. InvalidArgument for a bad id; AlreadyExists if a live
        shim owns the state directory; Unavailable if no shim could be started.
        """
        spec.validate()
        async with self._lock:
            if self._proc.returncode is not None:
                with contextlib.suppress(errors.Unavailable):
                    self._proc = await _start_template(self.template_dir, self._python)
            if self._proc.returncode is not None:
                return await spawn_direct(spec, python=self._python)
        try:
            await _request_spawn(self.template_dir / state.TEMPLATE_SOCKET, spec)
        except errors.Unavailable:
            if self._proc.returncode is None and await _alive(self._proc):
                raise
            if retry:  # the template died: once more, through a new one
                return await self.spawn(spec, retry=False)
            return await spawn_direct(spec, python=self._python)
        return await client.connect(spec.state_dir)

    async def close(self) -> None:
        """Stop the template (the shims it forked are not affected)."""
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        await self._proc.wait()


async def _alive(proc: asyncio.subprocess.Process) -> bool:
    # Give the child watcher a moment to notice a template that just died.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.05):
            await proc.wait()
    return proc.returncode is None


async def compile_package(python: str, package: str = SHIM_PACKAGE) -> None:
    """Write the bytecode caches of `package` that are missing or stale, with `python`.

    So that the template never compiles: compiling there leaves ~2 MiB more in
    the template, in every shim's RSS (as after each update of a source checkout,
    which nothing compiles). A directory berthd cannot write is left as it is.
    """
    proc = await asyncio.create_subprocess_exec(
        *(python, "-I", "-S", "-m", "compileall", "-q", package),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()


async def _start_template(template_dir: Path, python: str) -> asyncio.subprocess.Process:
    await compile_package(python)
    # The template creates its directory itself (no blocking calls here).
    argv = bootstrap_argv(
        python, "template", "--dir", str(template_dir), "--parent", str(os.getpid())
    )
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(START_TIMEOUT):
            line = await proc.stdout.readline()
    except TimeoutError:
        line = b""
    if line != b"ready\n":
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise errors.Unavailable(f"shim template in {template_dir} did not start")
    return proc


async def _request_spawn(sock_path: Path, spec: api.ShimSpec) -> None:
    request = protocol.encode({"id": 1, "method": "spawn", "params": api.to_wire(spec)})
    try:
        with state.socket_path(sock_path) as name:
            reader, writer = await asyncio.open_unix_connection(name)
    except OSError as e:
        raise errors.Unavailable(f"shim template {sock_path}: {e}") from None
    try:
        async with asyncio.timeout(SPAWN_TIMEOUT):
            writer.write(request)
            await writer.drain()
            reply = await protocol.read_message(reader, protocol.MAX_RESPONSE)
    except (OSError, TimeoutError, protocol.ProtocolError) as e:
        raise errors.Unavailable(f"spawn shim {spec.id}: {e!r}") from None
    finally:
        writer.close()
    _check_reply(spec, reply)


def _check_reply(spec: api.ShimSpec, reply: dict[str, object] | None) -> None:
    if reply is None:
        raise errors.Unavailable(f"spawn shim {spec.id}: no answer (see {spec.state_dir}/shim.log)")
    if "error" in reply:
        raise protocol.error_from_wire(reply["error"])


async def spawn_direct(spec: api.ShimSpec, *, python: str = sys.executable) -> client.ShimClient:
    """Start a shim without a template (exec + imports: slower, more memory)."""
    spec.validate()
    argv = bootstrap_argv(python, "spawn", "--id", spec.id, "--state-dir", str(spec.state_dir))
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(SPAWN_TIMEOUT):
            out = await proc.stdout.read()
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise errors.Unavailable(f"spawn shim {spec.id}: timed out") from None
    _check_reply(spec, _parse_frame(out))
    return await client.connect(spec.state_dir)


def _parse_frame(data: bytes) -> dict[str, object] | None:
    if len(data) < 4:
        return None
    try:
        return protocol.decode_body(data[4 : 4 + int.from_bytes(data[:4], "big")])
    except protocol.ProtocolError:
        return None

"""berthd: config -> pre-flight checks -> start-up -> serve -> graceful shutdown.

Pre-flight runs before anything is created on disk: a bad config, a socket in a missing or
unwritable directory, or a live berthd on the socket stops us with one line on stderr and
exit status 2. A socket file left by a crashed berthd is replaced. On SIGTERM/SIGINT we stop
accepting, give in-flight calls ``shutdown_timeout`` seconds, remove the socket and exit 0.
Shims and containers are never touched by a shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import os
import signal
import socket
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import grpc
import structlog

from cri import __version__, config, logs
from cri.components import build_runtime
from cri.server.services import add_services

log = structlog.get_logger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class StartupError(Exception):
    """berthd cannot start; the message says why and what to do."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="berthd", description="berth CRI daemon")
    p.add_argument("--config", type=Path, default=config.DEFAULT_CONFIG_PATH)
    p.add_argument("--root", help="root dir for persistent state")
    p.add_argument("--state", help="state dir for sockets and runtime files")
    p.add_argument("--socket", help="CRI unix socket path")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["json", "console"])
    p.add_argument("--metrics-address", help="host:port for /metrics ('' disables)")
    p.add_argument("--streaming-address", help="host:port of the streaming server")
    p.add_argument("--cgroup-driver", choices=["cgroupfs", "systemd"])
    p.add_argument("--cgroup-root", help="'/' or 'self' or an absolute cgroup path")
    p.add_argument("--cni-conf-dir", help="directory of CNI network configs")
    p.add_argument("--version", action="version", version=f"berthd {__version__}")
    return p.parse_args(argv)


def load_config(args: argparse.Namespace) -> config.Config:
    overrides: dict[str, Any] = {
        "root": args.root,
        "state": args.state,
        "socket": args.socket,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "metrics_address": args.metrics_address,
        "streaming_address": args.streaming_address,
        "cgroup_driver": args.cgroup_driver,
        "cgroup_root": args.cgroup_root,
        "cni": {"conf_dir": args.cni_conf_dir} if args.cni_conf_dir else None,
    }
    return config.load(args.config, overrides)


SYSTEMD_RUNTIME_DIR = Path("/run/systemd/system")  # exists iff systemd is the init (sd_booted)


def preflight(cfg: config.Config, *, systemd_dir: Path = SYSTEMD_RUNTIME_DIR) -> None:
    """Everything that can be checked without creating anything."""
    if cfg.cgroup_driver == "systemd" and not systemd_dir.is_dir():
        raise StartupError(
            'cgroup_driver = "systemd", but systemd does not run this host '
            f'({systemd_dir} is missing): use cgroup_driver = "cgroupfs"'
        )
    sock = Path(cfg.socket)
    parent = sock.parent
    creatable = parent == Path(cfg.state) or Path(cfg.state) in parent.parents
    if not parent.is_dir() and not creatable:
        raise StartupError(f"socket {sock}: directory {parent} does not exist")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise StartupError(f"socket {sock}: directory {parent} is not writable")
    if sock.exists() or sock.is_symlink():
        if not sock.is_socket():
            raise StartupError(f"socket {sock}: exists and is not a socket; refusing to replace it")
        if _socket_is_live(sock):
            raise StartupError(f"socket {sock}: another berthd is already serving it")


def _socket_is_live(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise StartupError(f"socket {path}: cannot probe it: {exc}") from None
    return True


def _lock_state_dir(state: Path) -> int:
    """Hold an exclusive lock for as long as we run: one berthd per state dir."""
    fd = os.open(state / "berthd.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StartupError(f"state dir {state} is in use by another berthd") from None
    return fd


def prepare_dirs(cfg: config.Config) -> int:
    """Create the root and state dirs and lock the state dir; returns the lock's fd."""
    Path(cfg.root).mkdir(parents=True, exist_ok=True, mode=0o700)
    state = Path(cfg.state)
    state.mkdir(parents=True, exist_ok=True, mode=0o711)
    return _lock_state_dir(state)


async def serve(cfg: config.Config) -> None:
    sock = Path(cfg.socket)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with AsyncExitStack() as stack:
            rt = await build_runtime(cfg, stack)
            server = grpc.aio.server(
                options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ]
            )
            add_services(server, rt)
            _bind(server, sock)
            await server.start()
            log.info("berthd serving", socket=str(sock), version=__version__, pid=os.getpid())
            await stop.wait()
            log.info("berthd stopping", grace_seconds=cfg.shutdown_timeout)
            rt.events.close()  # open GetContainerEvents streams end now, not after grace
            await server.stop(grace=cfg.shutdown_timeout)
            _unlink(sock)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("berthd stopped")


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _bind(server: grpc.aio.Server, sock: Path) -> None:
    sock.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    sock.unlink(missing_ok=True)  # preflight proved nobody serves it: a crash leftover
    old = os.umask(0o117)  # the socket is created 0660, never briefly wider
    try:
        server.add_insecure_port(f"unix://{sock}")
    finally:
        os.umask(old)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        cfg = load_config(args)
        preflight(cfg)
    except (config.ConfigError, StartupError) as exc:
        print(f"berthd: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.configure(cfg.log_level, cfg.log_format)
    try:
        lock_fd = prepare_dirs(cfg)
    except StartupError as exc:
        print(f"berthd: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(serve(cfg))
    finally:
        os.close(lock_fd)


if __name__ == "__main__":
    main()

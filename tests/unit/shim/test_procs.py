"""shim.procs: one owner of waitpid() per process (Children), and the blocking runs of workers."""

from __future__ import annotations

import os
import time

import pytest

from shim import procs


def reap_until(children: procs.Children, got: list[int], n: int) -> None:
    deadline = time.monotonic() + 10
    while len(got) < n:
        assert time.monotonic() < deadline
        children.reap()
        time.sleep(0.01)


def test_watched_child_gets_its_status() -> None:
    children = procs.Children()
    got: list[int] = []
    pid = procs.spawn(["sh", "-c", "exit 3"])
    children.watch(pid, got.append, adopted=False)
    reap_until(children, got, 1)
    assert procs.exit_code_of(got[0]) == 3


def test_status_reaped_before_the_watch_is_kept_for_an_adopted_pid() -> None:
    children = procs.Children()
    pid = procs.spawn(["true"])
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}"):  # reaped here, before anybody watches it
        assert time.monotonic() < deadline
        children.reap()
        time.sleep(0.01)
    got: list[int] = []
    children.watch(pid, got.append, adopted=True)
    assert [procs.exit_code_of(s) for s in got] == [0]


def test_a_kept_status_is_stale_for_a_new_spawn_of_the_same_pid() -> None:
    children = procs.Children()
    pid = procs.spawn(["sh", "-c", "exit 4"])
    while os.path.exists(f"/proc/{pid}"):
        children.reap()
        time.sleep(0.01)
    got: list[int] = []
    children.watch(pid, got.append, adopted=False)  # as if the pid had been reused
    children.reap()
    assert got == []


def test_run_blocking_captures_output_and_exit_code() -> None:
    done = procs.run_blocking(["sh", "-c", "echo out; echo err >&2; exit 5"], seconds=10)
    assert (done.stdout, done.stderr, done.exit_code) == (b"out\n", b"err\n", 5)


def test_run_blocking_kills_at_its_deadline() -> None:
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        procs.run_blocking(["sleep", "30"], seconds=0.2)
    assert time.monotonic() - t0 < 5


def test_wait_blocking_kills_at_its_deadline_and_reaps() -> None:
    pid = procs.spawn(["sleep", "30"])
    with pytest.raises(TimeoutError):
        procs.wait_blocking(pid, 0.1)
    assert not os.path.exists(f"/proc/{pid}")  # killed and reaped, no zombie
    pid = procs.spawn(["sh", "-c", "exit 2"])
    assert procs.exit_code_of(procs.wait_blocking(pid, 10)) == 2

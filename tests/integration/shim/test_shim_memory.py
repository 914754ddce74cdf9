"""Which processes offer their pages to KSM: the template and its shims, never what they exec."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.shim.conftest import Env

pytestmark = [pytest.mark.root, pytest.mark.runc]


def mergeable_mappings(pid: int) -> list[str]:
    """Names of the mappings of `pid` whose VmFlags include `mg` (MADV_MERGEABLE)."""
    names, current = [], ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if head and "-" in head[0] and not head[0].endswith(":"):
            current = head[5].strip() if len(head) > 5 else "[anon]"
        elif line.startswith("VmFlags:") and " mg" in line:
            names.append(current)
    return names


async def test_template_and_shims_are_mergeable_but_not_the_container(env: Env) -> None:
    c, _ = await env.running(["sleep", "1000"])
    template_marked = mergeable_mappings(env.launcher.pid)
    assert "[heap]" in template_marked and "[anon]" in template_marked
    assert "[stack]" not in template_marked
    assert "[heap]" in mergeable_mappings(c.pid)  # inherited across fork
    init = (await c.state()).pid
    assert mergeable_mappings(init) == []  # exec starts a fresh address space

from __future__ import annotations

from e2e.bench import procfs

STATUS = """Name:\tpython3
State:\tS (sleeping)
Pid:\t1234
VmPeak:\t  300000 kB
VmHWM:\t   81234 kB
VmRSS:\t   70000 kB
Threads:\t12
"""

SMAPS_ROLLUP = """55d0c0a00000-7ffd2c1fe000 ---p 00000000 00:00 0                          [rollup]
Rss:               14336 kB
Pss:                5120 kB
Pss_Anon:           4000 kB
Shared_Clean:       9000 kB
Private_Dirty:      1200 kB
"""

# comm "a) b" contains ") " — the parser must split at the last ")".
STAT = "4321 (a) b) S 17 4321 4321 0 -1 4194560 500 0 0 0 150 25 40 2 20 0 3 0 100 0 0"


def test_kb_fields_of_status() -> None:
    fields = procfs.parse_kb_fields(STATUS)
    assert fields["VmHWM"] == 81234
    assert fields["VmRSS"] == 70000
    assert "Threads" not in fields and "Name" not in fields


def test_kb_fields_of_smaps_rollup() -> None:
    fields = procfs.parse_kb_fields(SMAPS_ROLLUP)
    assert (fields["Rss"], fields["Pss"]) == (14336, 5120)
    assert fields["Private_Dirty"] == 1200


def test_stat_ticks_and_parent() -> None:
    assert procfs.parse_stat_ticks(STAT) == 175
    assert procfs.parse_stat_ticks(STAT, children=True) == 175 + 42  # cutime, cstime
    assert procfs.parse_stat_ppid(STAT) == 17


def test_cmdline() -> None:
    raw = b"/usr/bin/containerd-shim-runc-v2\x00-namespace\x00k8s.io\x00-address\x00/x.sock\x00"
    assert procfs.parse_cmdline(raw) == [
        "/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-address", "/x.sock",
    ]  # fmt: skip
    assert procfs.parse_cmdline(b"") == []

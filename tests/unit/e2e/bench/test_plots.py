from __future__ import annotations

from pathlib import Path

import pytest

from e2e.bench.records import FigureSpec, Results

pytest.importorskip("matplotlib")


def test_plots_are_written(tmp_path: Path) -> None:
    from e2e.bench import plots

    res = Results(runtimes=("berth", "containerd"))
    res.define(FigureSpec(key="a", title="RunPodSandbox, sequential", unit="ms", group="pod start"))
    res.define(FigureSpec(key="b", title="empty", unit="ms", group="never measured"))
    res.extend("a", "berth", [1.0, 2.0, 3.0])
    res.extend("a", "containerd", [2.0, 4.0])
    for x, y in ((0, 50.0), (100, 80.0)):
        res.point("daemon RSS [MiB]", "berth", x, y)
    written = plots.plot_all(res, tmp_path / "plots")
    assert [p.name for p in written] == ["pod-start.png", "memory-vs-containers.png"]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG")

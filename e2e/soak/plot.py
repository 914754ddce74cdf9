"""A PNG of a soak (matplotlib, Agg backend): berthd's RSS and PSS with the fitted line, its
CPU, its fds and threads, and the pods, containers and shims, against minutes; the phases
shaded. Drawn from the report's JSON form, so a saved report can be drawn again:

    python -m e2e.soak.plot docs/bench/soak.json docs/bench/soak.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from e2e.soak.analysis import cpu_series
from e2e.soak.sampler import Sample

PHASE_COLORS = {"fill": "tab:green", "churn": "tab:blue", "drain": "tab:red", "idle": "tab:gray"}


def plot(report: dict[str, Any], path: Path) -> Path:
    """``report``: `Report.to_json()` (or the JSON file read back)."""
    samples = [Sample(**s) for s in report["samples"]]
    minutes = [s.t / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    config = report["config"]
    fig.suptitle(
        f"berthd soak: {config['pods']} pods x {config['containers']} containers, "
        f"{report['pods_churned']} pods churned"
    )
    mem, cpu, fds, pop = axes
    mem.plot(minutes, [s.rss_mib for s in samples], label="RSS", color="tab:blue")
    mem.plot(minutes, [s.pss_mib for s in samples], label="PSS", color="tab:orange")
    m = report.get("memory")
    if m:
        xs = [m["fit_from_s"] / 60, m["fit_to_s"] / 60]
        rise = m["slope_mib_per_h"] * (m["fit_to_s"] - m["fit_from_s"]) / 3600
        ys = [m["intercept_mib"], m["intercept_mib"] + rise]
        mem.plot(xs, ys, "k--", label=f"fit after warm-up {m['slope_mib_per_h']:+.1f} MiB/h")
    mem.set_ylabel("MiB")
    mem.set_ylim(bottom=0)
    mem.legend(loc="lower right")
    series = cpu_series(samples)
    cpu.plot([t / 60 for t, _ in series], [p for _, p in series], color="tab:red", linewidth=0.8)
    cpu.set_ylabel("CPU, % of a core")
    cpu.set_ylim(bottom=0)
    fds.plot(minutes, [s.fds for s in samples], label="open fds", color="tab:purple")
    fds.plot(minutes, [s.threads for s in samples], label="threads", color="tab:brown")
    fds.set_ylim(bottom=0)
    fds.legend(loc="lower right")
    pop.plot(minutes, [s.pods for s in samples], label="pods")
    pop.plot(minutes, [s.containers for s in samples], label="containers")
    pop.plot(minutes, [s.shims for s in samples], label="shim processes")
    pop.set_ylim(bottom=0)
    pop.set_xlabel("minutes")
    pop.legend(loc="lower right")
    for ax in axes:
        _shade(ax, samples)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _shade(ax: Axes, samples: list[Sample]) -> None:
    """Each phase as a light band."""
    bounds: dict[str, list[float]] = {}
    for s in samples:
        bounds.setdefault(s.phase, [s.t, s.t])[1] = s.t
    for name, (start, end) in bounds.items():
        if name in PHASE_COLORS:
            ax.axvspan(start / 60, end / 60, color=PHASE_COLORS[name], alpha=0.07)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m e2e.soak.plot REPORT.json OUT.png")
    print(plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])))

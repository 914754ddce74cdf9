"""A PNG of a soak (matplotlib, Agg backend): berthd's RSS and PSS with the fitted line, its
CPU, its fds and threads, and the pods, containers and shims, against minutes; the phases
shaded."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from e2e.soak.analysis import cpu_percents
from e2e.soak.run import Report

PHASE_COLORS = {"fill": "tab:green", "churn": "tab:blue", "drain": "tab:red", "idle": "tab:gray"}


def plot(report: Report, path: Path) -> Path:
    samples = report.samples
    minutes = [s.t / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    config = report.config
    fig.suptitle(
        f"berthd soak: {config['pods']} pods x {config['containers']} containers, "
        f"{report.pods_churned} pods churned"
    )
    mem, cpu, fds, pop = axes
    mem.plot(minutes, [s.rss_mib for s in samples], label="RSS", color="tab:blue")
    mem.plot(minutes, [s.pss_mib for s in samples], label="PSS", color="tab:orange")
    m = report.memory
    if m is not None:
        xs = [m.fit_from_s / 60, m.fit_to_s / 60]
        rise = m.slope_mib_per_h * (m.fit_to_s - m.fit_from_s) / 3600
        ys = [m.intercept_mib, m.intercept_mib + rise]
        mem.plot(xs, ys, "k--", label=f"fit {m.slope_mib_per_h:+.1f} MiB/h")
    mem.set_ylabel("MiB")
    mem.set_ylim(bottom=0)
    mem.legend(loc="lower right")
    percents = cpu_percents(samples)
    cpu.plot(minutes[1:], percents, color="tab:red", linewidth=0.8)
    cpu.set_ylabel("CPU, % of a core")
    cpu.set_ylim(bottom=0)
    fds.plot(minutes, [s.fds for s in samples], label="open fds", color="tab:purple")
    fds.plot(minutes, [s.threads for s in samples], label="threads", color="tab:brown")
    fds.set_ylim(bottom=0)
    fds.legend(loc="lower right")
    pop.plot(minutes, [s.pods for s in samples], label="pods")
    pop.plot(minutes, [s.containers for s in samples], label="containers")
    pop.plot(minutes, [s.shims for s in samples], label="shims")
    pop.set_ylim(bottom=0)
    pop.set_xlabel("minutes")
    pop.legend(loc="lower right")
    for ax in axes:
        _shade(ax, report)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _shade(ax: Axes, report: Report) -> None:
    """Each phase as a light band, named once on the top panel."""
    bounds: dict[str, list[float]] = {}
    for s in report.samples:
        bounds.setdefault(s.phase, [s.t, s.t])[1] = s.t
    for name, (start, end) in bounds.items():
        if name in PHASE_COLORS:
            ax.axvspan(start / 60, end / 60, color=PHASE_COLORS[name], alpha=0.07, label=None)

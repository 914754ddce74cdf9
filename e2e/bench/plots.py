"""PNG plots of a run (matplotlib, Agg backend — no display needed).

- `<group>.png` per workload: one panel per figure, each runtime's samples side by side as a
  box plot with every sample drawn over it (jittered), so the tail is visible as points;
- `memory-vs-containers.png`: each memory series against the number of running containers.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from e2e.bench.records import Results

COLUMNS = 3
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "plot"


def plot_all(results: Results, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    groups: dict[str, list[str]] = {}
    for key, spec in results.specs.items():
        groups.setdefault(spec.group, []).append(key)
    for group, keys in groups.items():
        keys = [k for k in keys if any(results.data[k][r].samples for r in results.runtimes)]
        if keys:
            written.append(_distributions(results, group, keys, out / f"{slug(group)}.png"))
    if results.series:
        written.append(_series(results, out / "memory-vs-containers.png"))
    return written


def _grid(count: int, title: str) -> tuple[Figure, list[Axes]]:
    rows = (count + COLUMNS - 1) // COLUMNS
    cols = min(count, COLUMNS)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    fig.suptitle(title)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def _distributions(results: Results, group: str, keys: list[str], path: Path) -> Path:
    fig, axes = _grid(len(keys), f"{group}: {' vs '.join(results.runtimes)}")
    jitter = random.Random(0)
    for ax, key in zip(axes, keys, strict=True):
        spec = results.specs[key]
        data = [results.data[key][r].samples for r in results.runtimes]
        positions = [i + 1 for i, d in enumerate(data) if d]
        ax.boxplot([d for d in data if d], positions=positions, widths=0.5, showfliers=False)
        for i, samples in enumerate(data):
            xs = [i + 1 + jitter.uniform(-0.15, 0.15) for _ in samples]
            ax.scatter(xs, samples, s=6, alpha=0.5, color=COLORS[i % len(COLORS)])
        ax.set_xticks(range(1, len(data) + 1), list(results.runtimes))
        ax.set_title(_wrap(spec.title), fontsize=9)
        ax.set_ylabel(spec.unit)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _series(results: Results, path: Path) -> Path:
    names = list(results.series)
    fig, axes = _grid(len(names), "memory vs running containers")
    for ax, name in zip(axes, names, strict=True):
        for i, runtime in enumerate(results.runtimes):
            points = sorted(results.series[name].get(runtime, []))
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", label=runtime, color=COLORS[i % len(COLORS)])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("containers")
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _wrap(text: str, width: int = 48) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])

"""The Markdown report: one row per figure, then what failed and what was not measured.

Columns: figure | <a> p50 | <a> p99 | <b> p50 | <b> p99 | ratio a/b for runtimes a, b (berth
and containerd; any number of runtimes works, the ratio is of the first two's medians). A
cell holds a runtime's status ("unimplemented", "skipped: ...") when it has no samples.
"""

from __future__ import annotations

from e2e.bench import stats
from e2e.bench.records import FigureSpec, Results, RuntimeData


def figure_label(spec: FigureSpec) -> str:
    arrow = "↑" if spec.better == "higher" else "↓"
    return f"{spec.title} [{spec.unit}, {arrow}]"


def render_table(results: Results) -> str:
    runtimes = results.runtimes
    header = "| figure | " + " | ".join(f"{r} p50 | {r} p99" for r in runtimes)
    align = "|---|" + "---:|---:|" * len(runtimes)
    if len(runtimes) >= 2:
        header += f" | ratio {runtimes[0]}/{runtimes[1]}"
        align += "---:|"
    lines = [header + " |", align]
    lines += [_row(results, key) for key in results.specs]
    return "\n".join(lines)


def _row(results: Results, key: str) -> str:
    cells = [figure_label(results.specs[key])]
    medians: list[float | None] = []
    for runtime in results.runtimes:
        slot = results.data[key].get(runtime, RuntimeData())
        summary = stats.summarize(slot.samples)
        medians.append(summary.p50 if summary else None)
        cells += _cells(slot, summary)
    if len(medians) >= 2:
        cells.append(stats.format_ratio(stats.ratio(medians[0], medians[1])))
    return "| " + " | ".join(cells) + " |"


def _cells(slot: RuntimeData, summary: stats.Summary | None) -> list[str]:
    if summary is None:
        reason = slot.status or ("failed" if slot.errors else "-")
        return [reason, reason if reason == "-" else ""]
    return [stats.format_value(summary.p50), stats.format_value(summary.p99)]


def render_problems(results: Results, *, max_per_figure: int = 3) -> list[str]:
    """One bullet per (figure, runtime) with errors or a status, quoting the first errors."""
    out: list[str] = []
    for key, per_runtime in results.data.items():
        title = results.specs[key].title
        for runtime, slot in per_runtime.items():
            if slot.errors:
                quoted = "; ".join(_one_line(e) for e in slot.errors[:max_per_figure])
                more = f" (+{len(slot.errors) - max_per_figure} more)" if (
                    len(slot.errors) > max_per_figure) else ""  # fmt: skip
                out.append(f"- {title} — {runtime}: {len(slot.errors)} failed: {quoted}{more}")
            elif slot.status:
                out.append(f"- {title} — {runtime}: {slot.status}")
    return out


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render_markdown(results: Results) -> str:
    """The whole report: run facts, the table, sample counts, problems, notes."""
    parts = ["# berth vs containerd — CRI benchmark", ""]
    parts += [f"- {k}: {v}" for k, v in results.meta.items()]
    parts += ["", render_table(results), "", _definitions(results)]
    problems = render_problems(results)
    if problems:
        parts += ["", "## Failures and figures not measured", "", *problems]
    if results.notes:
        parts += ["", "## Notes", "", *(f"- {n}" for n in results.notes)]
    return "\n".join(parts) + "\n"


def _definitions(results: Results) -> str:
    counts = ", ".join(
        f"{results.specs[key].title}: "
        + "/".join(str(len(results.data[key][r].samples)) for r in results.runtimes)
        for key in results.specs
    )
    return (
        "p50 is the median; p99 is the nearest-rank 99th percentile (the maximum below 100 "
        "samples). The ratio is of the medians; ↓ means lower is better, ↑ higher. "
        f"Samples ({'/'.join(results.runtimes)}): {counts}."
    )

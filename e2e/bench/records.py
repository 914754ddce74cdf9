"""What a run collects: figure definitions, raw samples per runtime, errors, statuses, series.

A *figure* is one row of the table (say "RunPodSandbox, sequential [ms]"). Each runtime gets
its raw samples under the figure's key; a runtime that cannot answer records a *status*
instead ("unimplemented", "skipped: ...") and failed attempts record their error text. Series
are (x, y) points for plots such as memory against the number of containers.

`Results` is written from several worker threads at once, so every change takes its lock.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from e2e.bench import stats

Better = Literal["lower", "higher"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FigureSpec:
    key: str
    title: str
    unit: str
    group: str  # the workload it belongs to: one plot per group
    better: Better = "lower"


@dataclass(slots=True, kw_only=True)
class RuntimeData:
    samples: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    status: str = ""  # "" when measured; else why not ("unimplemented", "skipped: ...")


@dataclass(slots=True, kw_only=True)
class Results:
    runtimes: tuple[str, ...]
    specs: dict[str, FigureSpec] = field(default_factory=dict)
    data: dict[str, dict[str, RuntimeData]] = field(default_factory=dict)
    series: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def define(self, spec: FigureSpec) -> None:
        """Register a figure (idempotent); rows appear in the order of first definition."""
        with self._lock:
            self.specs.setdefault(spec.key, spec)
            self.data.setdefault(spec.key, {r: RuntimeData() for r in self.runtimes})

    def add(self, key: str, runtime: str, value: float) -> None:
        with self._lock:
            self._slot(key, runtime).samples.append(float(value))

    def extend(self, key: str, runtime: str, values: Sequence[float]) -> None:
        with self._lock:
            self._slot(key, runtime).samples.extend(float(v) for v in values)

    def error(self, key: str, runtime: str, message: str) -> None:
        with self._lock:
            self._slot(key, runtime).errors.append(message)

    def set_status(self, key: str, runtime: str, status: str) -> None:
        with self._lock:
            self._slot(key, runtime).status = status

    def point(self, name: str, runtime: str, x: float, y: float) -> None:
        with self._lock:
            self.series.setdefault(name, {}).setdefault(runtime, []).append((x, y))

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def _slot(self, key: str, runtime: str) -> RuntimeData:
        if key not in self.specs:
            raise KeyError(f"figure {key!r} was not defined")
        return self.data[key].setdefault(runtime, RuntimeData())

    def summary(self, key: str, runtime: str) -> stats.Summary | None:
        return stats.summarize(self.data[key][runtime].samples)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "meta": self.meta,
                "runtimes": list(self.runtimes),
                "figures": [self._figure_json(key) for key in self.specs],
                "series": {k: {r: [list(p) for p in v] for r, v in s.items()}
                           for k, s in self.series.items()},
                "notes": list(self.notes),
            }  # fmt: skip

    def _figure_json(self, key: str) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self.specs[key])
        out["runtimes"] = {}
        for runtime, slot in self.data[key].items():
            summary = stats.summarize(slot.samples)
            out["runtimes"][runtime] = {
                "samples": slot.samples,
                "summary": asdict(summary) if summary else None,
                "errors": slot.errors,
                "status": slot.status,
            }
        return out


def from_json(doc: Mapping[str, Any]) -> Results:
    """Read back what `Results.to_json` wrote (to re-render a report or plots)."""
    results = Results(runtimes=tuple(doc["runtimes"]), meta=dict(doc.get("meta", {})))
    for fig in doc["figures"]:
        results.define(
            FigureSpec(key=fig["key"], title=fig["title"], unit=fig["unit"],
                       group=fig["group"], better=fig["better"])
        )  # fmt: skip
        for runtime, slot in fig["runtimes"].items():
            results.data[fig["key"]][runtime] = RuntimeData(
                samples=[float(v) for v in slot["samples"]],
                errors=list(slot["errors"]),
                status=slot["status"],
            )
    for name, per_runtime in doc.get("series", {}).items():
        for runtime, points in per_runtime.items():
            for x, y in points:
                results.point(name, runtime, x, y)
    results.notes.extend(doc.get("notes", []))
    return results

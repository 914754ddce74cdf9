"""critest's ginkgo JSON report reduced to what a person reads: counts and one line per failure.

summary = summarize("berth", json.loads(Path("report.json").read_text()))
print(format_summary(summary))
print(format_comparison([berth, containerd]))
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

FAILED_STATES: Final = frozenset({"failed", "panicked", "aborted", "interrupted", "timedout"})
REASON_CHARS: Final = 300
_QUOTED: Final = re.compile(r'"[^"]*"')


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecResult:
    name: str
    state: str  # ginkgo's: passed, failed, skipped, pending, panicked, ...
    reason: str = ""  # the failure or skip message on one line
    location: str = ""  # file:line of the failure
    seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    runtime: str
    specs: tuple[SpecResult, ...]
    suite_failures: tuple[str, ...] = ()  # BeforeSuite/AfterSuite nodes that failed

    def count(self, *states: str) -> int:
        return sum(1 for s in self.specs if s.state in states)

    @property
    def failed(self) -> tuple[SpecResult, ...]:
        return tuple(s for s in self.specs if s.state in FAILED_STATES)

    def counts(self) -> dict[str, int]:
        return {
            "specs": len(self.specs),
            "passed": self.count("passed"),
            "failed": len(self.failed),
            "skipped": self.count("skipped", "pending"),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            **self.counts(),
            "suite_failures": list(self.suite_failures),
            "failures": [asdict(s) for s in self.failed],
            "specs": [asdict(s) for s in self.specs],
        }


def one_line(message: str, limit: int = REASON_CHARS) -> str:
    """`message` with its whitespace collapsed, cut to `limit` characters."""
    flat = " ".join(message.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def reason(message: str, limit: int = REASON_CHARS) -> str:
    """A failure message on one line: gomega's annotation plus the gRPC status, without the
    Go struct dump that follows `Unexpected error:`."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    rpc = next((line for line in lines if line.startswith("rpc error:")), "")
    if rpc and lines:
        return one_line(f"{lines[0]}: {rpc}" if lines[0] != rpc else rpc, limit)
    return one_line(message, limit)


def spec_name(report: Mapping[str, Any]) -> str:
    parts = [*(report.get("ContainerHierarchyTexts") or []), report.get("LeafNodeText", "")]
    return " ".join(p for p in parts if p)


def spec_result(report: Mapping[str, Any]) -> SpecResult:
    failure = report.get("Failure") or {}
    where = failure.get("Location") or {}
    location = f"{where.get('FileName', '')}:{where.get('LineNumber', '')}" if where else ""
    return SpecResult(
        name=spec_name(report),
        state=str(report.get("State", "")),
        reason=reason(str(failure.get("Message", ""))),
        location=location.rpartition("cri-tools/")[2],
        seconds=round(float(report.get("RunTime", 0)) / 1e9, 3),
    )


def summarize(runtime: str, reports: Sequence[Mapping[str, Any]]) -> Summary:
    """A Summary of a ginkgo `--json-report` document (a list of suite reports)."""
    specs: list[SpecResult] = []
    suite_failures: list[str] = []
    for suite in reports:
        for node in suite.get("SpecReports") or []:
            result = spec_result(node)
            if node.get("LeafNodeType") == "It":
                specs.append(result)
            elif result.state in FAILED_STATES:
                suite_failures.append(f"{node.get('LeafNodeType')}: {result.reason}")
    return Summary(runtime=runtime, specs=tuple(specs), suite_failures=tuple(suite_failures))


def format_summary(summary: Summary) -> str:
    counts = summary.counts()
    lines = [
        f"== critest on {summary.runtime}: {counts['specs']} specs — {counts['passed']} passed, "
        f"{counts['failed']} failed, {counts['skipped']} skipped",
    ]
    lines += [f"  SUITE FAILURE {reason}" for reason in summary.suite_failures]
    for spec in summary.failed:
        lines.append(f"  FAIL [{spec.state}] {spec.name}")
        lines.append(f"       {spec.reason}  ({spec.location})")
    lines += [f"  skipped x{n}: {why}" for why, n in skip_reasons(summary.specs).most_common()]
    lines.append(closing_line(summary))
    return "\n".join(lines)


def closing_line(summary: Summary) -> str:
    """The plain closing line: 'critest: N passed, N failed, N skipped'."""
    c = summary.counts()
    return f"critest: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"


def skip_reasons(specs: Iterable[SpecResult]) -> Counter[str]:
    """Skip reasons with quoted names (container ids, paths) blanked, so alike ones group."""
    unselected = "(not selected: benchmark spec or filtered out)"
    reasons = (_QUOTED.sub('"…"', s.reason)[:120] for s in specs if s.state == "skipped")
    return Counter(r or unselected for r in reasons)


def comparison_rows(summaries: Sequence[Summary]) -> list[tuple[str, list[str]]]:
    """(spec name, state per summary) for every spec whose states differ, sorted by name."""
    states = [{s.name: s.state for s in summary.specs} for summary in summaries]
    names = sorted(set().union(*(st.keys() for st in states)))
    rows = [(name, [st.get(name, "-") for st in states]) for name in names]
    return [(name, row) for name, row in rows if len(set(row)) > 1]


def format_comparison(summaries: Sequence[Summary]) -> str:
    header = " | ".join(f"{s.runtime:>10}" for s in summaries)
    lines = [f"== spec-by-spec: {len(comparison_rows(summaries))} specs differ", f"{header} | spec"]
    for name, row in comparison_rows(summaries):
        lines.append(" | ".join(f"{state:>10}" for state in row) + f" | {name}")
    totals = [" ".join(f"{k}={v}" for k, v in s.counts().items()) for s in summaries]
    lines += [f"{s.runtime}: {t}" for s, t in zip(summaries, totals, strict=True)]
    return "\n".join(lines)

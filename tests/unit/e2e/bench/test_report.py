from __future__ import annotations

import json

import pytest

from e2e.bench import records, report
from e2e.bench.records import FigureSpec, Results


def sample_results() -> Results:
    res = Results(runtimes=("berth", "containerd"), meta={"date": "today"})
    res.define(FigureSpec(key="pod", title="pod start", unit="ms", group="pods"))
    res.define(FigureSpec(key="pull", title="pull", unit="MB/s", group="pull", better="higher"))
    res.define(FigureSpec(key="stats", title="ListContainerStats", unit="ms", group="density"))
    res.extend("pod", "berth", [10, 20, 30])
    res.extend("pod", "containerd", [20, 40, 60, 80])
    res.add("pull", "berth", 100)
    res.error("pull", "containerd", "UNAVAILABLE: registry down\nsecond line")
    res.set_status("stats", "berth", "unimplemented")
    res.add("stats", "containerd", 5)
    res.point("daemon RSS [MiB]", "berth", 0, 50)
    res.note("something to know")
    return res


def test_table_rows() -> None:
    lines = report.render_table(sample_results()).splitlines()
    assert lines[0] == (
        "| figure | berth p50 | berth p99 | containerd p50 | containerd p99 "
        "| ratio berth/containerd |"
    )
    assert lines[2] == "| pod start [ms, ↓] | 20.0 | 30.0 | 50.0 | 80.0 | 0.400x |"
    assert lines[3] == "| pull [MB/s, ↑] | 100 | 100 | failed |  | n/a |"
    assert lines[4] == "| ListContainerStats [ms, ↓] | unimplemented |  | 5.00 | 5.00 | n/a |"


def test_one_runtime_has_no_ratio_column() -> None:
    res = Results(runtimes=("berth",))
    res.define(FigureSpec(key="x", title="x", unit="ms", group="g"))
    res.add("x", "berth", 1.0)
    assert report.render_table(res).splitlines() == [
        "| figure | berth p50 | berth p99 |",
        "|---|---:|---:|",
        "| x [ms, ↓] | 1.00 | 1.00 |",
    ]


def test_problems_quote_errors_on_one_line() -> None:
    problems = report.render_problems(sample_results())
    assert problems == [
        "- pull — containerd: 1 failed: UNAVAILABLE: registry down second line",
        "- ListContainerStats — berth: unimplemented",
    ]


def test_markdown_has_everything() -> None:
    text = report.render_markdown(sample_results())
    assert "- date: today" in text
    assert "nearest-rank" in text
    assert "pod start: 3/4" in text
    assert "## Failures and figures not measured" in text
    assert "- something to know" in text


def test_json_round_trip() -> None:
    original = sample_results()
    doc = json.loads(json.dumps(original.to_json()))
    assert doc["figures"][0]["runtimes"]["berth"]["summary"]["p50"] == 20
    again = records.from_json(doc)
    assert report.render_markdown(again) == report.render_markdown(original)
    assert again.series == original.series


def test_undefined_figure_is_refused() -> None:
    with pytest.raises(KeyError, match="nope"):
        Results(runtimes=("a",)).add("nope", "a", 1.0)


def test_define_is_idempotent_and_keeps_order() -> None:
    res = sample_results()
    res.define(FigureSpec(key="pod", title="other title", unit="s", group="x"))
    assert list(res.specs) == ["pod", "pull", "stats"]
    assert res.specs["pod"].title == "pod start"
    assert res.data["pod"]["berth"].samples == [10, 20, 30]

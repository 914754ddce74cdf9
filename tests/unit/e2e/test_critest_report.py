from __future__ import annotations

from typing import Any

from e2e.critest_support import report


def _spec(texts: list[str], leaf: str, state: str, message: str = "", kind: str = "It") -> Any:
    node: dict[str, Any] = {
        "ContainerHierarchyTexts": texts,
        "LeafNodeText": leaf,
        "LeafNodeType": kind,
        "State": state,
        "RunTime": 1_500_000_000,
    }
    if message:
        node["Failure"] = {
            "Message": message,
            "Location": {"FileName": "/src/cri-tools/pkg/validate/pod.go", "LineNumber": 42},
        }
    return node


def _report(*nodes: Any) -> list[dict[str, Any]]:
    return [{"SuiteDescription": "CRI validation", "SpecReports": list(nodes)}]


def test_counts_only_it_nodes_and_keeps_suite_failures_apart() -> None:
    doc = _report(
        _spec([], "", "failed", "setup broke", kind="BeforeSuite"),
        _spec(["[k8s.io] PodSandbox"], "runtime should run", "passed"),
        _spec(
            ["[k8s.io] Image"],
            "pull by digest",
            "failed",
            "Expected\n    <bool>: false\nto be true",
        ),
        _spec(["[k8s.io] AppArmor"], "load profile", "skipped", "AppArmor is not enabled"),
        _spec(["[k8s.io] Streaming"], "exec", "timedout", "timed out"),
    )
    summary = report.summarize("berth", doc)
    assert summary.counts() == {"specs": 4, "passed": 1, "failed": 2, "skipped": 1}
    assert summary.suite_failures == ("BeforeSuite: setup broke",)


def test_a_failure_has_a_one_line_reason_and_a_short_location() -> None:
    doc = _report(_spec(["Image"], "pull", "failed", "Expected\n    <bool>: false\nto be true"))
    (failure,) = report.summarize("berth", doc).failed
    assert failure.name == "Image pull"
    assert failure.reason == "Expected <bool>: false to be true"
    assert failure.location == "pkg/validate/pod.go:42"
    assert failure.seconds == 1.5


def test_a_grpc_failure_keeps_the_annotation_and_the_status_but_not_the_struct_dump() -> None:
    message = (
        "failed to list container stats\nUnexpected error:\n    <*status.Error | 0xc0>: \n"
        "    rpc error: code = Unimplemented desc = ListContainerStats is not implemented\n"
        "    {\n        s: {\n            Code: 12,\n        },\n    }\noccurred"
    )
    assert report.reason(message) == (
        "failed to list container stats: "
        "rpc error: code = Unimplemented desc = ListContainerStats is not implemented"
    )


def test_long_reasons_are_cut() -> None:
    assert len(report.one_line("x " * 1000, limit=50)) == 50


def test_summary_text_ends_in_the_plain_closing_line() -> None:
    doc = _report(_spec(["A"], "b", "failed", "boom"), _spec(["A"], "c", "skipped", "no feature"))
    text = report.format_summary(report.summarize("berth", doc))
    assert "FAIL [failed] A b" in text
    assert "boom" in text
    assert "skipped x1: no feature" in text
    assert text.splitlines()[-1] == "critest: 0 passed, 1 failed, 1 skipped"


def test_skip_reasons_group_alike_messages() -> None:
    doc = _report(
        _spec(["A"], "b", "skipped", 'unsupported: failed to generate container "1234"'),
        _spec(["A"], "c", "skipped", 'unsupported: failed to generate container "5678"'),
        _spec(["A"], "d", "skipped"),
    )
    reasons = report.skip_reasons(report.summarize("x", doc).specs)
    assert reasons == {
        'unsupported: failed to generate container "…"': 2,
        "(not selected: benchmark spec or filtered out)": 1,
    }


def test_comparison_lists_only_specs_whose_states_differ() -> None:
    berth = report.summarize(
        "berth", _report(_spec(["A"], "same", "passed"), _spec(["A"], "diff", "failed", "x"))
    )
    containerd = report.summarize(
        "containerd", _report(_spec(["A"], "same", "passed"), _spec(["A"], "diff", "skipped", "y"))
    )
    assert report.comparison_rows([berth, containerd]) == [("A diff", ["failed", "skipped"])]
    assert "1 specs differ" in report.format_comparison([berth, containerd])


def test_summary_json_carries_counts_and_failures() -> None:
    doc = _report(_spec(["A"], "b", "failed", "boom"))
    out = report.summarize("containerd", doc).to_json()
    assert out["runtime"] == "containerd"
    assert out["failed"] == 1
    assert out["failures"][0]["reason"] == "boom"

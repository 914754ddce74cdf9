"""`critest -benchmark` against each runtime, when `critest` is on PATH.

critest reads a flat lowerCamelCase parameters file and, given an output directory that
exists, writes one `*_benchmark_data.json` per benchmark: `operationsNames` and datapoints
whose `operationsDurationsNs` follow those names. Each operation becomes a figure. Its image
benchmarks pull and remove their image, so they get an image of their own (another image id
than the busybox every other workload runs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from e2e.bench.cri_ops import Target
from e2e.bench.options import Options
from e2e.bench.records import FigureSpec, Results
from e2e.bench.workloads import Context

PLACEHOLDER = "critest"
TIMEOUT = 900


def params(samples: int, image: str) -> str:
    values: dict[str, Any] = {
        "containersNumber": samples,
        "containersNumberParallel": 1,
        "containerBenchmarkTimeoutSeconds": 60,
        "podsNumber": samples,
        "podsNumberParallel": 1,
        "podBenchmarkTimeoutSeconds": 60,
        "imagesNumber": samples,
        "imagesNumberParallel": 1,
        "imageBenchmarkTimeoutSeconds": 120,
        "imagePullingBenchmarkImage": image,
        "podContainerStartBenchmarkTimeoutSeconds": 60,
    }
    lines = [f"{k}: {json.dumps(v)}" for k, v in values.items()]
    return "\n".join([*lines, "imageListingBenchmarkImages:", f"  - {json.dumps(image)}"]) + "\n"


def parse_output(directory: Path) -> dict[str, list[float]]:
    """{"<benchmark>: <operation>": [ms, ...]} from critest's *_benchmark_data.json files."""
    out: dict[str, list[float]] = {}
    for path in sorted(directory.glob("*.json")):
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or "operationsNames" not in doc:
            continue
        bench = path.stem.removesuffix("_benchmark_data")
        for point in doc.get("datapoints") or []:
            durations = point.get("operationsDurationsNs") or []
            for op, ns in zip(doc["operationsNames"], durations, strict=False):
                out.setdefault(f"{bench}: {op}", []).append(ns / 1e6)
    return out


class CritestWorkload:
    name = "critest"

    def define(self, results: Results, options: Options) -> None:
        if shutil.which("critest") is None:
            results.define(FigureSpec(key=PLACEHOLDER, title="critest -benchmark", unit="ms",
                                      group="critest"))  # fmt: skip

    def repetitions(self, options: Options) -> int:
        return 1

    def run(self, target: Target, ctx: Context) -> None:
        binary = shutil.which("critest")
        if binary is None:
            ctx.results.set_status(PLACEHOLDER, target.name, "skipped: critest not on PATH")
            return
        out = ctx.workdir / f"critest-{target.name}"
        out.mkdir(parents=True, exist_ok=True)
        (out / "params.yaml").write_text(params(ctx.options.seq_pods, ctx.images.critest))
        (out / "images.yaml").write_text(
            f"defaultTestContainerImage: {json.dumps(target.image)}\n"
            f"webServerTestImage: {json.dumps(target.image)}\n"
        )
        done = self._critest(binary, target, out)
        if done.returncode != 0:
            ctx.results.note(f"{target.name}: critest -benchmark exited {done.returncode}: "
                             f"{done.stdout[-500:]}")  # fmt: skip
        self._record(target, ctx, parse_output(out / "data"))

    def _critest(self, binary: str, target: Target, out: Path) -> subprocess.CompletedProcess[str]:
        (out / "data").mkdir(exist_ok=True)
        endpoint = target.runtime.endpoint
        return subprocess.run(
            [binary, "-benchmark", "-runtime-endpoint", endpoint, "-image-endpoint", endpoint,
             "-benchmarking-params-file", str(out / "params.yaml"),
             "-test-images-file", str(out / "images.yaml"),
             "-benchmarking-output-dir", str(out / "data")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def _record(self, target: Target, ctx: Context, figures: dict[str, list[float]]) -> None:
        for name, samples in figures.items():
            key = f"critest.{name}"
            ctx.results.define(FigureSpec(key=key, title=f"critest {name}", unit="ms",
                                          group="critest"))  # fmt: skip
            ctx.results.extend(key, target.name, samples)

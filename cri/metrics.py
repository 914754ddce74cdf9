"""Every Prometheus metric berthd exports, in one place (all prefixed ``berth_``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

CRI_REQUEST_DURATION = Histogram(
    "berth_cri_request_duration_seconds",
    "Time spent answering a CRI request, by method and gRPC status code.",
    ["method", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CRI_REQUEST_ERRORS = Counter(
    "berth_cri_request_errors_total",
    "CRI requests that ended with a non-OK status, by method and code.",
    ["method", "code"],
    registry=REGISTRY,
)
CRI_REQUESTS_IN_FLIGHT = Gauge(
    "berth_cri_requests_in_flight",
    "CRI requests being answered right now.",
    registry=REGISTRY,
)
# berth_sandboxes{state} and berth_containers{state}: cri.metrics_collector.StateCollector.
SHIMS = Gauge("berth_shims", "Live shim processes berthd is connected to.", registry=REGISTRY)
IMAGE_PULL_BYTES = Counter(
    "berth_image_pull_bytes_total", "Bytes of image blobs downloaded.", registry=REGISTRY
)
IMAGE_PULL_DURATION = Histogram(
    "berth_image_pull_duration_seconds",
    "Time to pull and unpack an image.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
CNI_DURATION = Histogram(
    "berth_cni_duration_seconds",
    "Time spent running a CNI operation, by operation and outcome.",
    ["operation", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
STORE_WRITE_DURATION = Histogram(
    "berth_store_write_duration_seconds",
    "Time to commit a metadata store transaction durably.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
    registry=REGISTRY,
)

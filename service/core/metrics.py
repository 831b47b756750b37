"""Prometheus metrics of one app instance.

Each app gets its own ``CollectorRegistry`` so that several apps in one
process (tests, benchmarks) do not register the same metric twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_STATES = ("queued", "running", "succeeded", "failed")


@dataclass
class ServiceMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        registry = self.registry
        # ``route`` is the route template (``/v1/images/{image_id}``), never the raw
        # path, so that clients cannot create unbounded label values.
        self.requests = Counter("harma_http_requests_total", "HTTP requests by route, method and status.",
                                ("route", "method", "status"), registry=registry)
        self.request_latency = Histogram("harma_http_request_duration_seconds", "HTTP request latency by route.",
                                         ("route", "method"), buckets=_LATENCY_BUCKETS_S, registry=registry)
        self.encode_latency = Histogram("harma_encode_duration_seconds", "Encoder time per micro-batch.",
                                        ("modality",), buckets=_LATENCY_BUCKETS_S, registry=registry)
        self.encode_batch_size = Histogram("harma_encode_batch_size", "Queries per encoder micro-batch.",
                                           ("modality",), buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=registry)
        self.search_latency = Histogram("harma_search_duration_seconds", "Index search time per query.",
                                        ("index",), buckets=_LATENCY_BUCKETS_S, registry=registry)
        self.index_images = Gauge("harma_index_images", "Images in the serving snapshot.", registry=registry)
        self.index_captions = Gauge("harma_index_captions", "Captions in the serving snapshot.", registry=registry)
        self.jobs = Gauge("harma_admin_jobs", "Admin jobs by kind and state.", ("kind", "state"), registry=registry)
        self.snapshot_swaps = Counter("harma_snapshot_swaps_total", "Snapshots swapped in after a job.",
                                      registry=registry)

    def set_job_state(self, kind: str, counts: dict[str, int]) -> None:
        for name in JOB_STATES:
            self.jobs.labels(kind=kind, state=name).set(counts.get(name, 0))

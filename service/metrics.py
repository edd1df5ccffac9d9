"""Prometheus metrics of one process: what it measures as it works (requests, jobs, model loads and inference,
failures). Gauges read from the database at scrape time (jobs by state, pools, replicas) live in
``service.db.monitoring.stats`` and are added by the ``/metrics`` handler.

Each API process and each worker keeps its own counters; Prometheus scrapes every process (the API on
``/metrics``, a standalone worker on ``SOUNDALIKE_METRICS_WORKER_PORT``) and sums across them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "soundalike"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
MODEL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

JOB_DURATION = Histogram(
    f"{PREFIX}_job_duration_seconds",
    "Wall time of one job run, by task and outcome (succeeded or failed)",
    ["task", "outcome"],
    buckets=JOB_BUCKETS,
)
MODEL_LOAD = Histogram(
    f"{PREFIX}_model_load_seconds",
    "Time to build a model from its verified checkpoint, by model alias and version",
    ["model", "version"],
    buckets=MODEL_BUCKETS,
)
MODEL_INFERENCE = Histogram(
    f"{PREFIX}_model_inference_seconds",
    "Time of one batched model call (generate, variants, transfer, decode), by model alias and version",
    ["model", "version"],
    buckets=MODEL_BUCKETS,
)
GENERATION_FAILURES = Counter(
    f"{PREFIX}_generation_failures", "Generations this process marked failed, by failure class", ["failure_class"]
)


@contextmanager
def timed(histogram: Histogram, **labels: str) -> Iterator[None]:
    """Observe the wall time of the block, whether it returns or raises."""
    start = time.perf_counter()
    try:
        yield
    finally:
        histogram.labels(**labels).observe(time.perf_counter() - start)


class Snapshot(Collector):
    """Gauges read once (from the database, pools) for one scrape: ``{name: (help, labels, [(values, v)])}``."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, list[str], list[tuple[list[str], float]]]] = {}

    def add(self, name: str, documentation: str, labels: dict[str, str], value: float) -> None:
        help_text, names, samples = self._families.setdefault(f"{PREFIX}_{name}", (documentation, list(labels), []))
        samples.append(([str(labels[n]) for n in names], float(value)))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (documentation, names, samples) in self._families.items():
            family = GaugeMetricFamily(name, documentation, labels=names)
            for values, value in samples:
                family.add_metric(values, value)
            yield family


def exposition(snapshot: Snapshot | None = None) -> bytes:
    """This process's metrics plus the scrape-time gauges, in the Prometheus text format."""
    text = generate_latest(REGISTRY)
    if snapshot is not None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(snapshot)
        text += generate_latest(registry)
    return text

"""``GET /metrics``: Prometheus text format, for admin keys. Request counts and latency per route come from
the Prometheus middleware; jobs, generations and pools are read at scrape time. A standalone worker serves
its own metrics on ``SOUNDALIKE_METRICS_WORKER_PORT`` (``service.jobs.worker``)."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.plugins.prometheus import PrometheusConfig

from service.api.auth import requires_role
from service.db.monitoring import stats
from service.jobs.queue import JOB_QUEUES
from service.metrics import CONTENT_TYPE, PREFIX, Snapshot, exposition

METRICS_PATH = "/metrics"
LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]


def request_metrics() -> PrometheusConfig:
    """Request counts and latency histograms labelled by route template (``/v1/generations/{id}``)."""
    return PrometheusConfig(
        app_name="soundalike",
        prefix=f"{PREFIX}_http",
        group_path=True,
        exclude_unhandled_paths=True,
        exclude=[f"^{METRICS_PATH}$"],
        buckets=LATENCY_BUCKETS,
    )


async def scrape(state: State) -> bytes:
    snapshot = Snapshot()
    async with state.engine.connect() as conn:
        await stats.database_gauges(conn, snapshot, JOB_QUEUES)
    stats.engine_pool_gauges("app", state.engine, snapshot)
    stats.psycopg_pool_gauges("jobs", state.get("job_pool"), snapshot)
    stats.replica_gauges(state.get("replicas"), snapshot)
    return exposition(snapshot)


class MetricsController(Controller):
    path = METRICS_PATH
    tags = ["operations"]

    @get(summary="Prometheus metrics (admin keys)", guards=[requires_role("admin")])
    async def metrics(self, state: State) -> Response[bytes]:
        return Response(await scrape(state), media_type=CONTENT_TYPE)

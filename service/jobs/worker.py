"""Running a worker: standalone (`soundalike worker`) or beside the API (`soundalike serve`)."""

from __future__ import annotations

import procrastinate

from service.jobs.queue import GENERATION_QUEUE, REENCODE_QUEUE
from service.jobs.runtime import Runtime
from service.jobs.tasks import MAINTENANCE_QUEUE
from service.net import ensure_port_free
from service.settings import MetricsSettings


async def run_worker(app: procrastinate.App, runtime: Runtime, install_signal_handlers: bool = True) -> None:
    """Process jobs until cancelled (or until SIGINT/SIGTERM when signal handlers are installed)."""
    settings = runtime.settings.jobs
    await app.run_worker_async(
        queues=[GENERATION_QUEUE, REENCODE_QUEUE, MAINTENANCE_QUEUE],
        concurrency=settings.concurrency,
        additional_context={"runtime": runtime},
        update_heartbeat_interval=settings.heartbeat_seconds,
        stalled_worker_timeout=settings.stalled_after_seconds,
        install_signal_handlers=install_signal_handlers,
        delete_jobs="successful",
    )


def serve_metrics(settings: MetricsSettings) -> str | None:
    """Serve this worker's metrics (jobs, model loads and inference, failures) on the configured port, in a
    background thread; returns where, or None when no port is set."""
    if settings.worker_port is None:
        return None
    from prometheus_client import start_http_server

    ensure_port_free(settings.worker_host, settings.worker_port)
    start_http_server(settings.worker_port, settings.worker_host)
    return f"http://{settings.worker_host}:{settings.worker_port}/metrics"

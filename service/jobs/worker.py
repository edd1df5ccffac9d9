"""Running a worker: standalone (`soundalike worker`) or beside the API (`soundalike serve`)."""

from __future__ import annotations

import procrastinate

from service.jobs.queue import GENERATION_QUEUE
from service.jobs.runtime import Runtime
from service.jobs.tasks import MAINTENANCE_QUEUE


async def run_worker(app: procrastinate.App, runtime: Runtime, install_signal_handlers: bool = True) -> None:
    """Process jobs until cancelled (or until SIGINT/SIGTERM when signal handlers are installed)."""
    settings = runtime.settings.jobs
    await app.run_worker_async(
        queues=[GENERATION_QUEUE, MAINTENANCE_QUEUE],
        concurrency=settings.concurrency,
        additional_context={"runtime": runtime},
        update_heartbeat_interval=settings.heartbeat_seconds,
        stalled_worker_timeout=settings.stalled_after_seconds,
        install_signal_handlers=install_signal_handlers,
        delete_jobs="successful",
    )

"""The tasks workers run, registered on each procrastinate app; each reads the worker's ``Runtime``."""

from __future__ import annotations

import uuid

import procrastinate

from service.domain import production
from service.jobs import recovery
from service.jobs.queue import GENERATE_TASK, GENERATION_QUEUE
from service.jobs.runtime import Runtime
from service.settings import JobsSettings

MAINTENANCE_QUEUE = "maintenance"
SWEEP_TASK = "soundalike:sweep"


def runtime_of(context: procrastinate.JobContext) -> Runtime:
    return context.additional_context["runtime"]


async def generate(context: procrastinate.JobContext, generation_ids: list[str]) -> list[str]:
    runtime = runtime_of(context)
    done = await production.produce(
        runtime.sessions, runtime.store, runtime.models, [uuid.UUID(i) for i in generation_ids]
    )
    return [str(i) for i in done]


async def sweep(context: procrastinate.JobContext, timestamp: int) -> dict[str, int]:
    """Retry the jobs of dead workers; queue requests that never got a job."""
    runtime = runtime_of(context)
    return {
        "stalled_jobs": await recovery.retry_stalled_jobs(context.app, runtime),
        "undeferred_requests": await recovery.defer_orphaned(context.app, runtime),
    }


def register_tasks(app: procrastinate.App, jobs: JobsSettings) -> None:
    app.task(name=GENERATE_TASK, queue=GENERATION_QUEUE, pass_context=True)(generate)
    sweep_task = app.task(name=SWEEP_TASK, queue=MAINTENANCE_QUEUE, pass_context=True)(sweep)
    app.periodic(cron=jobs.sweep_cron)(sweep_task)

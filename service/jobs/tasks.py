"""The tasks workers run, registered on each procrastinate app; each reads the worker's ``Runtime``."""

from __future__ import annotations

import asyncio
import uuid

import procrastinate

from service.domain.catalogue import lifecycle
from service.domain.generation import failures, production
from service.domain.models import reencode
from service.domain.notify import events
from service.jobs import recovery
from service.jobs.instrument import measured
from service.jobs.queue import GENERATE_TASK, GENERATION_QUEUE, MAINTENANCE_QUEUE, REENCODE_QUEUE, REENCODE_TASK
from service.jobs.runtime import Runtime
from service.jobs.webhooks import register_webhook_tasks
from service.settings import JobsSettings

SWEEP_TASK = "soundalike:sweep"
LIFECYCLE_TASK = "soundalike:lifecycle"
INDEX_SYNC_TASK = "soundalike:index-sync"


def runtime_of(context: procrastinate.JobContext) -> Runtime:
    return context.additional_context["runtime"]


async def generate(context: procrastinate.JobContext, generation_ids: list[str]) -> list[str]:
    runtime = runtime_of(context)
    ids = [uuid.UUID(i) for i in generation_ids]
    try:
        done = await production.produce(runtime.sessions, runtime.store, runtime.models, ids)
    except Exception as exc:
        async with runtime.sessions() as session:
            await failures.record(session, ids, failures.classify(exc))
        raise
    finally:
        await runtime.models.flush_stats()  # this job's model calls into the registry's statistics
    return [str(i) for i in done]


async def reencode_chunk(context: procrastinate.JobContext, batch_id: str, chunk: int) -> dict[str, int]:
    runtime = runtime_of(context)
    try:
        return await reencode.run_chunk_job(
            runtime.sessions, runtime.database_url, runtime.store, runtime.models, uuid.UUID(batch_id), chunk
        )
    finally:
        await runtime.models.flush_stats()


async def sweep(context: procrastinate.JobContext, timestamp: int) -> dict[str, int]:
    """Retry the jobs of dead workers; queue requests that never got a job, or whose job ended without them."""
    runtime = runtime_of(context)
    return {
        "stalled_jobs": await recovery.retry_stalled_jobs(context.app, runtime),
        "undeferred_requests": await recovery.defer_orphaned(context.app, runtime),
        "stranded_requests": await recovery.requeue_stranded(context.app, runtime),
        "unqueued_reencodes": await recovery.queue_unqueued_reencodes(context.app, runtime),
    }


async def lifecycle_pass(context: procrastinate.JobContext, timestamp: int) -> dict[str, int]:
    """Archive old generations, purge deleted ones, remove orphan files, prune old events."""
    runtime = runtime_of(context)
    storage = runtime.settings.storage
    async with runtime.sessions() as session:
        report = await lifecycle.run_lifecycle(
            session, runtime.store, storage.retention_days, storage.orphan_grace_seconds
        )
        pruned = await events.prune(session, runtime.settings.events.retention_days)
    return {**vars(report), "events_pruned": pruned}


async def index_sync(context: procrastinate.JobContext, timestamp: int) -> dict[str, int]:
    """Bring every model's FAISS mirror up to date (synchronous work, run off the event loop)."""
    from indexing.sync import sync_all

    runtime = runtime_of(context)
    results = await asyncio.to_thread(sync_all, runtime.database_url, runtime.settings.storage.index_dir)
    return {"models": len(results)}


def register_tasks(app: procrastinate.App, jobs: JobsSettings) -> None:
    app.task(name=GENERATE_TASK, queue=GENERATION_QUEUE, pass_context=True)(measured(GENERATE_TASK, generate))
    app.task(name=REENCODE_TASK, queue=REENCODE_QUEUE, pass_context=True)(measured(REENCODE_TASK, reencode_chunk))
    sweep_task = app.task(name=SWEEP_TASK, queue=MAINTENANCE_QUEUE, pass_context=True)(measured(SWEEP_TASK, sweep))
    app.periodic(cron=jobs.sweep_cron)(sweep_task)
    lifecycle_task = app.task(name=LIFECYCLE_TASK, queue=MAINTENANCE_QUEUE, pass_context=True)(
        measured(LIFECYCLE_TASK, lifecycle_pass)
    )
    app.periodic(cron=jobs.lifecycle_cron)(lifecycle_task)
    # queueing_lock: a sync that is already waiting makes another one pointless.
    sync_task = app.task(
        name=INDEX_SYNC_TASK,
        queue=MAINTENANCE_QUEUE,
        pass_context=True,
        queueing_lock=INDEX_SYNC_TASK,
        lock=INDEX_SYNC_TASK,
    )(measured(INDEX_SYNC_TASK, index_sync))
    app.periodic(cron=jobs.index_sync_cron)(sync_task)
    register_webhook_tasks(app, jobs, MAINTENANCE_QUEUE)

"""Keeping work moving: retry jobs of dead workers, defer requests whose job was never queued."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

import procrastinate
from procrastinate.jobs import Status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.generation import failures, production
from service.domain.generation.generations import enqueue
from service.domain.models import reencode
from service.jobs.queue import REENCODE_TASK, ProcrastinateQueue
from service.jobs.runtime import Runtime

log = logging.getLogger(__name__)
GroupFinder = Callable[[AsyncSession], Awaitable[list[list[uuid.UUID]]]]  # groups of generations, one job each


async def retry_stalled_jobs(app: procrastinate.App, runtime: Runtime) -> int:
    """Jobs whose worker stopped heart-beating are retried, up to ``jobs.max_attempts`` runs; after that
    their generations are marked failed, never left ``running``."""
    settings = runtime.settings.jobs
    stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=settings.stalled_after_seconds)
    for job in stalled:
        if job.attempts + 1 >= settings.max_attempts:
            await _give_up(app, runtime, job)
        else:
            log.warning("job %s (%s) lost its worker; retrying (attempt %s)", job.id, job.task_name, job.attempts + 2)
            await app.job_manager.retry_job(job)
    return len(stalled)


async def _give_up(app: procrastinate.App, runtime: Runtime, job) -> None:
    ids = job.task_kwargs.get("generation_ids", [])
    reason = f"the worker died {job.attempts + 1} times running this job"
    log.error("job %s lost its worker %s times; marking its work failed", job.id, job.attempts + 1)
    async with runtime.sessions() as session:
        if job.task_name == REENCODE_TASK:
            await reencode.fail_chunk(session, uuid.UUID(job.task_kwargs["batch_id"]), job.task_kwargs["chunk"], reason)
            return await app.job_manager.finish_job_by_id_async(job.id, status=Status.FAILED, delete_job=False)
        await production.mark_failed(session, ids, reason)
        await failures.record(session, ids, failures.INFRASTRUCTURE)
    await app.job_manager.finish_job_by_id_async(job.id, status=Status.FAILED, delete_job=False)


async def defer_orphaned(app: procrastinate.App, runtime: Runtime, older_than_seconds: float = 30) -> int:
    """Pending generations committed without a job (crash between commit and defer) get one now."""
    return await _queue_groups(
        app, runtime, lambda session: production.pending_without_job(session, older_than_seconds)
    )


# Pending generations whose job ended without making them: it was cancelled with one of its clips (before a
# cancel left the job to the other clips of its request), or it failed before it claimed them.
PENDING_WITH_ENDED_JOB = text("""
SELECT g.job_id, g.id FROM generations g JOIN procrastinate_jobs j ON j.id = g.job_id
WHERE g.status = 'pending' AND g.deleted_at IS NULL AND j.status IN ('cancelled', 'failed', 'aborted')
ORDER BY g.job_id, g.seed, g.id
""")


async def requeue_stranded(app: procrastinate.App, runtime: Runtime) -> int:
    """Each group of pending generations whose job ended without making them gets a new job."""
    return await _queue_groups(app, runtime, _pending_with_ended_job)


async def _pending_with_ended_job(session: AsyncSession) -> list[list[uuid.UUID]]:
    groups: dict[int, list[uuid.UUID]] = {}
    for job_id, generation_id in await session.execute(PENDING_WITH_ENDED_JOB):
        groups.setdefault(job_id, []).append(generation_id)
    return list(groups.values())


async def _queue_groups(app: procrastinate.App, runtime: Runtime, find: GroupFinder) -> int:
    """One new job for each group of generations ``find`` returns; the number of groups."""
    queue = ProcrastinateQueue(app)
    async with runtime.sessions() as session:
        groups = await find(session)
        for ids in groups:
            await enqueue(session, queue, ids)
    return len(groups)


async def queue_unqueued_reencodes(app: procrastinate.App, runtime: Runtime, older_than_seconds: float = 30) -> int:
    """Re-encode batches committed without their jobs (crash between commit and defer) get them now."""
    queue = ProcrastinateQueue(app)
    async with runtime.sessions() as session:
        batches = await reencode.unqueued_batches(session, older_than_seconds)
        for batch in batches:
            await reencode.defer_chunks(session, queue, batch)
    return len(batches)

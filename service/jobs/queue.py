"""The job queue the API defers into: procrastinate behind the domain's ``JobQueue`` port."""

from __future__ import annotations

import uuid

import procrastinate

GENERATE_TASK = "soundalike:generate"
GENERATION_QUEUE = "generation"
REENCODE_TASK = "soundalike:reencode"
REENCODE_QUEUE = "reencode"
REENCODE_PRIORITY = -1  # behind interactive generations on a shared worker
MAINTENANCE_QUEUE = "maintenance"  # the periodic sweeps and webhook deliveries
JOB_QUEUES = (GENERATION_QUEUE, REENCODE_QUEUE, MAINTENANCE_QUEUE)


class ProcrastinateQueue:
    def __init__(self, app: procrastinate.App) -> None:
        self.app = app

    async def defer_generation(self, generation_ids: list[uuid.UUID]) -> int:
        deferrer = self.app.configure_task(GENERATE_TASK, queue=GENERATION_QUEUE)
        return await deferrer.defer_async(generation_ids=[str(i) for i in generation_ids])

    async def defer_reencode(self, batch_id: uuid.UUID, chunk: int) -> int:
        deferrer = self.app.configure_task(REENCODE_TASK, queue=REENCODE_QUEUE, priority=REENCODE_PRIORITY)
        return await deferrer.defer_async(batch_id=str(batch_id), chunk=chunk)

    async def cancel(self, job_id: int) -> None:
        # A queued job is cancelled outright; a running one is asked to abort (the worker's final
        # transaction also skips rows that were cancelled meanwhile).
        await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)

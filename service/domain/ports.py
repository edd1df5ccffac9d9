"""What the domain needs from the outside: a job queue and loaded models (implemented in ``service.jobs``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from service.ml.pipeline import Pipeline

T = TypeVar("T")


@runtime_checkable
class JobQueue(Protocol):
    async def defer_generation(self, generation_ids: list[uuid.UUID]) -> int:
        """Queue one job that produces these generations; returns the job id."""

    async def defer_reencode(self, batch_id: uuid.UUID, chunk: int) -> int:
        """Queue the job that re-encodes one chunk of a re-encode batch; returns the job id."""

    async def cancel(self, job_id: int) -> None:
        """Cancel a queued job, or ask a running one to abort."""


@runtime_checkable
class ModelRunner(Protocol):
    async def run(
        self, model_id: int, work: Callable[[Pipeline], T], operation: str = "inference", items: int = 1
    ) -> T:
        """Run ``work`` with the model's loaded (checksum-verified) pipeline, off the event loop; the call is
        counted in the model's inference statistics under ``operation`` (``generate``, ``encode``)."""

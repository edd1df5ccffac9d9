"""Job metrics: every task's run is timed by outcome (``soundalike_job_duration_seconds``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service.metrics import JOB_DURATION


def measured(task_name: str, function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``function`` with its wall time observed under ``task_name`` and ``succeeded``/``failed``."""

    @functools.wraps(function)
    async def run(*args: Any, **kwargs: Any) -> Any:
        start, outcome = time.perf_counter(), "failed"
        try:
            result = await function(*args, **kwargs)
            outcome = "succeeded"
            return result
        finally:
            JOB_DURATION.labels(task=task_name, outcome=outcome).observe(time.perf_counter() - start)

    return run

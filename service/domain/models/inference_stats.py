"""Per-model inference statistics in the registry: how often each model version ran, how long and in how much memory.

Every process that runs models tallies its calls in memory (``InferenceStats.record``: a few additions per
batched call) and adds the tallies to ``model_inference_stats`` now and then (``flush``: one upsert per model
and operation; workers flush at the end of each job, any process at most a minute after its last flush). Rows
sum over processes: counts and seconds add up, ``max_seconds`` and the memory columns keep the largest value,
and latencies are counted in fixed buckets (``LATENCY_BOUNDS``) so that p50/p95 can be estimated across all of
them. A process killed before it flushed loses its last tallies, never the job's work.

Memory is the process's resident set: ``peak_rss_bytes`` is its peak (``ru_maxrss``) right after a call, and
``rss_growth_bytes`` how much the resident set grew over one call. For ``load`` that growth is about the model's
footprint (approximate when the process does other work at the same time).
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import INFERENCE_OPERATIONS, ModelInferenceStats

log = logging.getLogger(__name__)
LOAD, GENERATE, ENCODE, INFERENCE = INFERENCE_OPERATIONS
# Upper bounds (seconds) of the latency buckets: 1 ms to about 150 s in steps of 2^(1/4) (+19 %), then one
# bucket for anything longer. Rows store counts per bucket: changing the bounds needs a migration.
LATENCY_BOUNDS: tuple[float, ...] = tuple(0.001 * 2 ** (i / 4) for i in range(69))
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident set now (Linux ``/proc``), or None where that cannot be read."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def peak_resident_bytes() -> int:
    """The largest resident set this process has had (``ru_maxrss``: kilobytes on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bucket_of(seconds: float) -> int:
    """The index of the bucket ``seconds`` is counted in (``len(LATENCY_BOUNDS)``: above the last bound)."""
    for index, bound in enumerate(LATENCY_BOUNDS):
        if seconds <= bound:
            return index
    return len(LATENCY_BOUNDS)


def quantile(buckets: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of the latencies counted in ``buckets``, interpolated inside its bucket (as
    Prometheus' ``histogram_quantile``); None without any count. Above the last bound it is the last bound."""
    total = sum(buckets)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(LATENCY_BOUNDS):
                return LATENCY_BOUNDS[-1]
            lower = LATENCY_BOUNDS[index - 1] if index else 0.0
            return lower + (LATENCY_BOUNDS[index] - lower) * (rank - seen) / count
        seen += count
    return LATENCY_BOUNDS[-1]


@dataclass
class Tally:
    """One process's unflushed calls of one model and operation."""

    calls: int = 0
    items: int = 0
    errors: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    peak_rss_bytes: int | None = None
    rss_growth_bytes: int | None = None

    def add(self, seconds: float, items: int, ok: bool, peak_rss: int | None, growth: int | None) -> None:
        self.calls += 1
        self.items += items
        self.errors += 0 if ok else 1
        self.total_seconds += seconds
        self.max_seconds = max(self.max_seconds, seconds)
        self.buckets[bucket_of(seconds)] += 1
        self.peak_rss_bytes = _larger(self.peak_rss_bytes, peak_rss)
        self.rss_growth_bytes = _larger(self.rss_growth_bytes, growth)

    def merge(self, other: Tally) -> None:
        self.calls += other.calls
        self.items += other.items
        self.errors += other.errors
        self.total_seconds += other.total_seconds
        self.max_seconds = max(self.max_seconds, other.max_seconds)
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.peak_rss_bytes = _larger(self.peak_rss_bytes, other.peak_rss_bytes)
        self.rss_growth_bytes = _larger(self.rss_growth_bytes, other.rss_growth_bytes)


def _larger(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


# Adds a process's tallies to the rows; a model deleted since (nothing to add to) is skipped.
UPSERT = text("""
INSERT INTO model_inference_stats AS s (model_id, operation, calls, items, errors, total_seconds, max_seconds,
    latency_buckets, peak_rss_bytes, rss_growth_bytes, updated_at)
SELECT :model_id, :operation, :calls, :items, :errors, :total_seconds, :max_seconds,
    CAST(:buckets AS bigint[]), :peak_rss_bytes, :rss_growth_bytes, now()
WHERE EXISTS (SELECT 1 FROM models WHERE id = :model_id)
ON CONFLICT (model_id, operation) DO UPDATE SET
    calls = s.calls + excluded.calls,
    items = s.items + excluded.items,
    errors = s.errors + excluded.errors,
    total_seconds = s.total_seconds + excluded.total_seconds,
    max_seconds = greatest(s.max_seconds, excluded.max_seconds),
    latency_buckets = ARRAY(
        SELECT coalesce(a, 0) + coalesce(b, 0)
        FROM unnest(s.latency_buckets, excluded.latency_buckets) WITH ORDINALITY AS t(a, b, n) ORDER BY n
    ),
    peak_rss_bytes = greatest(s.peak_rss_bytes, excluded.peak_rss_bytes),
    rss_growth_bytes = greatest(s.rss_growth_bytes, excluded.rss_growth_bytes),
    updated_at = now()
""")


class InferenceStats:
    """One process's tallies per (model id, operation) since its last flush."""

    def __init__(self, flush_every_seconds: float = 60.0) -> None:
        self.flush_every_seconds = flush_every_seconds
        self._tallies: dict[tuple[int, str], Tally] = {}
        self._flushed_at = time.monotonic()

    def start(self) -> float | None:
        """The resident set before a call (pass it to ``record``)."""
        return resident_bytes()

    def record(
        self, model_id: int, operation: str, seconds: float, items: int = 1, ok: bool = True, rss_before=None
    ) -> None:
        after = resident_bytes()
        growth = after - rss_before if after is not None and rss_before is not None else None
        tally = self._tallies.setdefault((model_id, operation), Tally())
        tally.add(seconds, items, ok, peak_resident_bytes(), growth)

    @property
    def pending(self) -> int:
        """Unflushed (model, operation) tallies."""
        return len(self._tallies)

    def due(self) -> bool:
        return bool(self._tallies) and time.monotonic() - self._flushed_at >= self.flush_every_seconds

    async def flush(self, session: AsyncSession) -> int:
        """Add the tallies to the registry's rows and commit; returns how many rows were written. On an error
        the tallies are kept for the next flush (and the error raised)."""
        taken, self._tallies = self._tallies, {}
        self._flushed_at = time.monotonic()
        if not taken:
            return 0
        try:
            await session.execute(UPSERT, [_parameters(model_id, op, t) for (model_id, op), t in taken.items()])
            await session.commit()
        except BaseException:
            for key, tally in taken.items():
                self._tallies.setdefault(key, Tally()).merge(tally)
            raise
        return len(taken)


def _parameters(model_id: int, operation: str, tally: Tally) -> dict:
    return {
        "model_id": model_id,
        "operation": operation,
        "calls": tally.calls,
        "items": tally.items,
        "errors": tally.errors,
        "total_seconds": tally.total_seconds,
        "max_seconds": tally.max_seconds,
        "buckets": tally.buckets,
        "peak_rss_bytes": tally.peak_rss_bytes,
        "rss_growth_bytes": tally.rss_growth_bytes,
    }


# -- reading ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperationStats:
    """How a model ran under one operation (``load``, ``generate``, ``encode``, ``inference``), summed over every
    process that ran it; p50/p95 are estimated from a latency histogram (within one bucket, 19 %)."""

    operation: str
    calls: int
    items: int
    errors: int
    mean_seconds: float | None
    p50_seconds: float | None
    p95_seconds: float | None
    max_seconds: float
    peak_rss_bytes: int | None
    rss_growth_bytes: int | None
    updated_at: datetime

    @classmethod
    def of(cls, row: ModelInferenceStats) -> OperationStats:
        return cls(
            operation=row.operation,
            calls=row.calls,
            items=row.items,
            errors=row.errors,
            mean_seconds=row.total_seconds / row.calls if row.calls else None,
            p50_seconds=quantile(row.latency_buckets, 0.5),
            p95_seconds=quantile(row.latency_buckets, 0.95),
            max_seconds=row.max_seconds,
            peak_rss_bytes=row.peak_rss_bytes,
            rss_growth_bytes=row.rss_growth_bytes,
            updated_at=row.updated_at,
        )


async def stats_of(session: AsyncSession, model_ids: Sequence[int]) -> dict[int, list[OperationStats]]:
    """``{model_id: [stats per operation, in INFERENCE_OPERATIONS order]}``; a model that never ran has []."""
    found: dict[int, list[OperationStats]] = {model_id: [] for model_id in model_ids}
    if not model_ids:
        return found
    rows = await session.scalars(select(ModelInferenceStats).where(ModelInferenceStats.model_id.in_(model_ids)))
    for row in sorted(rows, key=lambda r: (r.model_id, INFERENCE_OPERATIONS.index(r.operation))):
        found[row.model_id].append(OperationStats.of(row))
    return found

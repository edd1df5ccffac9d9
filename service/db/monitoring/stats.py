"""Gauges read at scrape time: jobs by state and queue depth, generations by status and failure class,
connection-pool usage. They come from the database (or the pools), so every API process reports the
same, cluster-wide numbers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db.replicas import ReplicaSet
from service.metrics import Snapshot

JOBS_BY_STATE = text(
    "SELECT queue_name, status::text, count(*), "
    "       coalesce(extract(epoch FROM now() - min(scheduled_at) FILTER (WHERE status = 'todo')), 0) "
    "FROM procrastinate_jobs GROUP BY queue_name, status"
)
ACTIVE_JOB_STATES = ("todo", "doing")
ACTIVE_GENERATION_STATES = ("pending", "running")
# Only the states that stay small or matter for alerting; finished rows are counted by failure class.
GENERATIONS_BY_STATE = text(
    "SELECT status, coalesce(failure_class, ''), count(*) FROM generations "
    "WHERE status IN ('pending', 'running', 'failed') GROUP BY status, failure_class"
)


async def database_gauges(conn: AsyncConnection, snapshot: Snapshot, queues: tuple[str, ...] = ()) -> None:
    """Jobs by queue and state, queue depth, the oldest waiting job's age, generations by state. ``queues`` (and
    pending/running generations) get a series even when empty: 0 rather than no data on a dashboard."""
    jobs = {(queue, state): 0 for queue in queues for state in ACTIVE_JOB_STATES}
    depth: dict[str, tuple[int, float]] = dict.fromkeys(queues, (0, 0.0))
    for queue, state, count, waiting in await conn.execute(JOBS_BY_STATE):
        jobs[(queue, state)] = count
        if state == "todo":
            depth[queue] = (count, waiting)
    for (queue, state), count in jobs.items():
        snapshot.add("jobs", "Jobs in the queue table by queue and state", {"queue": queue, "state": state}, count)
    for queue, (count, waiting) in depth.items():
        snapshot.add("jobs_queue_depth", "Jobs waiting for a worker", {"queue": queue}, count)
        snapshot.add("jobs_oldest_waiting_seconds", "Age of the oldest waiting job", {"queue": queue}, waiting)
    generations = {(status, ""): 0 for status in ACTIVE_GENERATION_STATES}
    for status, failure_class, count in await conn.execute(GENERATIONS_BY_STATE):
        generations[(status, failure_class)] = count
    for (status, failure_class), count in generations.items():
        snapshot.add(
            "generations",
            "Generations pending, running or failed (failed ones by failure class)",
            {"status": status, "failure_class": failure_class},
            count,
        )


def engine_pool_gauges(name: str, engine: AsyncEngine, snapshot: Snapshot) -> None:
    """SQLAlchemy's pool: its size and how many connections are checked out, idle, or overflow."""
    pool: Any = engine.pool
    if not hasattr(pool, "checkedout"):
        return
    doc = "Connections of a pool by state"
    snapshot.add("db_pool_size", "Configured size of a connection pool", {"pool": name}, pool.size())
    snapshot.add("db_pool_connections", doc, {"pool": name, "state": "checked_out"}, pool.checkedout())
    snapshot.add("db_pool_connections", doc, {"pool": name, "state": "idle"}, pool.checkedin())
    snapshot.add("db_pool_connections", doc, {"pool": name, "state": "overflow"}, max(pool.overflow(), 0))


def psycopg_pool_gauges(name: str, pool: Any, snapshot: Snapshot) -> None:
    """A psycopg_pool (the job queue's): open, idle, and requests waiting for a connection."""
    if pool is None:
        return
    stats = pool.get_stats()
    doc = "Connections of a pool by state"
    size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
    snapshot.add("db_pool_size", "Configured size of a connection pool", {"pool": name}, pool.max_size)
    snapshot.add("db_pool_connections", doc, {"pool": name, "state": "checked_out"}, size - idle)
    snapshot.add("db_pool_connections", doc, {"pool": name, "state": "idle"}, idle)
    snapshot.add(
        "db_pool_waiting", "Requests waiting for a connection", {"pool": name}, stats.get("requests_waiting", 0)
    )


def replica_gauges(replicas: ReplicaSet | None, snapshot: Snapshot) -> None:
    """Each read replica: up (1/0, as last polled), replay lag, and its pool."""
    for replica in replicas.replicas if replicas is not None else []:
        labels = {"replica": replica.name}
        snapshot.add("db_replica_up", "1 when the replica serves reads (reachable, in recovery)", labels, replica.up)
        snapshot.add("db_replica_lag_seconds", "Replay lag of a read replica", labels, replica.lag_seconds)
        engine_pool_gauges(f"replica {replica.name}", replica.engine, snapshot)

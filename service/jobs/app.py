"""The procrastinate app: one per process, bound to the application-role database URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import procrastinate
import psycopg_pool

from service.db.server import urls
from service.jobs.tasks import register_tasks
from service.settings import DatabaseSettings, JobsSettings


def create_job_app(database_url: str, jobs: JobsSettings) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(conninfo=urls.libpq_url(database_url))
    app = procrastinate.App(connector=connector)
    register_tasks(app, jobs)
    return app


@asynccontextmanager
async def opened(
    app: procrastinate.App, database_url: str, db: DatabaseSettings
) -> AsyncIterator[psycopg_pool.AsyncConnectionPool]:
    """Open the app on a pool that connects in the background, so a database that is down at start-up
    makes /ready say so instead of blocking the start. Yields the pool (its usage is a metric)."""
    pool = psycopg_pool.AsyncConnectionPool(
        urls.libpq_url(database_url),
        min_size=1,
        max_size=db.pool_size + db.max_overflow,
        timeout=db.pool_timeout,
        open=False,
        check=psycopg_pool.AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=False)
    async with app.open_async(pool):
        try:
            yield pool
        finally:
            await pool.close()

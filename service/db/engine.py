"""Connections: the async SQLAlchemy engine the app uses, and a sync psycopg path for bulk ``COPY``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from pgvector.psycopg import register_vector, register_vector_async
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from service.db.server import urls
from service.settings import DatabaseSettings


def create_engine(url: str, db: DatabaseSettings) -> AsyncEngine:
    """An async engine over psycopg 3 whose connections all know the pgvector type."""
    engine = create_async_engine(
        urls.sqlalchemy_url(url),
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        pool_timeout=db.pool_timeout,
        pool_pre_ping=True,
        # The most recently returned connection first: below full concurrency the same few backends serve every
        # request (warm caches, statements already prepared) and the rest idle; round-robin over 8 cost a
        # filtered search ~1 ms more of PostgreSQL CPU (docs/performance.md).
        pool_use_lifo=True,
        connect_args={"connect_timeout": db.connect_timeout},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _register_vector(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(_register_vector_if_installed)

    return engine


async def _register_vector_if_installed(conn: psycopg.AsyncConnection) -> None:
    # Before the first migration the type does not exist yet; such connections only run DDL.
    row = await (await conn.execute("SELECT 1 FROM pg_type WHERE typname = 'vector'")).fetchone()
    if row:
        await register_vector_async(conn)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        await conn.rollback()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def connect_sync(url: str, **kwargs: Any) -> psycopg.Connection:
    """A plain psycopg connection with pgvector registered, for bulk loads and maintenance."""
    conn = psycopg.connect(urls.libpq_url(url), **kwargs)
    register_vector(conn)
    return conn


def copy_rows(
    conn: psycopg.Connection,
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> int:
    """Bulk-load rows with ``COPY ... FORMAT BINARY`` (the fastest load path); returns the row count."""
    column_sql = psycopg.sql.SQL(", ").join(psycopg.sql.Identifier(c) for c in columns)
    statement = psycopg.sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
        psycopg.sql.Identifier(table), column_sql
    )
    count = 0
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)
            count += 1
    return count

"""Alembic environment (async, psycopg 3). Driven by ``service.db.schema.migrate``; the URL arrives in
``config.attributes["url"]`` (the migration-owner role), the application role in ``["app_role"]``."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from service.db.schema.migration_support import include_object
from service.db.schema.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async() -> None:
    engine = create_async_engine(config.attributes["url"], poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.attributes["url"], target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run_async())
    else:  # called from async code: a loop of our own, in a helper thread
        with ThreadPoolExecutor(max_workers=1) as helper:
            helper.submit(asyncio.run, run_async()).result()

"""What CLI commands share: the database for one command, and running async domain code in it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from service.db.engine import create_engine, session_factory
from service.db.server.runtime import DatabaseHandle, open_database
from service.settings import get_settings

T = TypeVar("T")


@contextmanager
def database() -> Iterator[DatabaseHandle]:
    """The configured database for the length of one command (the embedded server is started if needed)."""
    settings = get_settings()
    settings.check_profile()
    handle = open_database(settings)
    try:
        yield handle
    finally:
        handle.close()


def run_in_session(handle: DatabaseHandle, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one application-role session; it commits what it means to keep."""

    async def main() -> T:
        engine = create_engine(handle.app_url, get_settings().database)
        try:
            async with session_factory(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def register_shipped_model(handle: DatabaseHandle) -> str:
    """Register the checkpoint shipped in the package as the built-in model (idempotent, every start-up)."""
    from service.domain.models import registry
    from service.domain.models.checkpoints import spec_of
    from service.ml.pipeline import Pipeline, default_checkpoint_path

    path = default_checkpoint_path()
    if not path.exists():
        return f"no shipped checkpoint at {path}; register a model with `soundalike models add PATH --alias NAME`"
    pipeline = Pipeline.load(path)
    spec = spec_of(pipeline)

    async def register(session: AsyncSession) -> str:
        result = await registry.register_builtin(session, path, version=pipeline.version, spec=spec)
        await session.commit()
        return result.note

    return run_in_session(handle, register)

"""Running domain code (async, application role) from CLI commands."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from service.db.engine import create_engine, session_factory
from service.db.runtime import DatabaseHandle
from service.settings import get_settings

T = TypeVar("T")


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

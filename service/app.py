"""The Litestar application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from sqlalchemy.ext.asyncio import AsyncEngine

from service import __version__
from service.api.health import HealthController
from service.api.problems import EXCEPTION_HANDLERS
from service.db.engine import create_engine
from service.settings import Settings, get_settings


def create_app(database_url: str, settings: Settings | None = None) -> Litestar:
    """Build the API for one database (the application-role URL)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def database_lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(database_url, settings.database)
        app.state.engine = engine
        try:
            yield
        finally:
            await engine.dispose()

    def provide_engine() -> AsyncEngine:
        return app.state.engine

    app = Litestar(
        route_handlers=[HealthController],
        dependencies={"db_engine": Provide(provide_engine, sync_to_thread=False)},
        lifespan=[database_lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Soundalike",
            version=__version__,
            description="Generate music, find clips that sound alike, restyle and regenerate variants.",
            path="/schema",
        ),
        debug=settings.server.debug,
    )
    return app

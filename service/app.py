"""The Litestar application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service import __version__
from service.api.auth import authentication_middleware, provide_caller
from service.api.clusters import ClustersController, MapController
from service.api.health import HealthController
from service.api.me import MeController
from service.api.problems import EXCEPTION_HANDLERS
from service.db.engine import create_engine, session_factory
from service.settings import Settings, get_settings


def create_app(database_url: str, settings: Settings | None = None) -> Litestar:
    """Build the API for one database (the application-role URL)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def database_lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(database_url, settings.database)
        app.state.engine = engine
        app.state.sessionmaker = session_factory(engine)
        try:
            yield
        finally:
            await engine.dispose()

    return Litestar(
        route_handlers=[HealthController, MeController, ClustersController, MapController],
        dependencies={
            "db_engine": Provide(provide_engine, sync_to_thread=False),
            "db_session": Provide(provide_session),
            "caller": Provide(provide_caller, sync_to_thread=False),
        },
        middleware=[authentication_middleware],
        lifespan=[database_lifespan],
        state=State({"settings": settings}),
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Soundalike",
            version=__version__,
            description="Generate music, find clips that sound alike, restyle and regenerate variants.",
            path="/schema",
            components=Components(
                security_schemes={"apiKey": SecurityScheme(type="http", scheme="bearer", description="API key")}
            ),
            security=[{"apiKey": []}],
        ),
        debug=settings.server.debug,
    )


def provide_engine(state: State) -> AsyncEngine:
    return state.engine


async def provide_session(state: State) -> AsyncIterator[AsyncSession]:
    """One session per request; handlers (through domain services) commit what they mean to keep."""
    async with state.sessionmaker() as session:
        yield session

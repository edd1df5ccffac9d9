"""The Litestar application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.api.auth import authentication_middleware, provide_caller
from service.api.clusters import ClustersController, MapController
from service.api.events import EventsController
from service.api.generations import GenerationController
from service.api.health import HealthController
from service.api.hygiene import check_request, query_parameter_names
from service.api.imports import ImportController
from service.api.me import MeController
from service.api.metrics import MetricsController, request_metrics
from service.api.models import ModelController
from service.api.neighbours import NeighboursController
from service.api.openapi_docs import openapi_config
from service.api.presets import DefaultsController, PresetController
from service.api.problems import EXCEPTION_HANDLERS
from service.api.rate_limit import rate_limit
from service.api.search import PathController, SearchController
from service.api.sessions import replicas_lifespan, request_session
from service.api.tags import TagsController
from service.api.variants import DerivedController
from service.api.webhooks import WebhookController
from service.domain.access.api_keys import KeyCache
from service.domain.access.shared_state import SharedState
from service.domain.cache.store import ReadCache
from service.domain.models.default_cache import MODELS_CHANNEL, DefaultModelCache
from service.domain.notify.events import EventHub
from service.domain.ports import JobQueue
from service.jobs.app import create_job_app, opened
from service.jobs.queue import ProcrastinateQueue
from service.jobs.runtime import Runtime
from service.jobs.worker import run_worker
from service.settings import Settings, get_settings
from service.web.pages import STATIC_FILES, TEMPLATES, WebController

log = logging.getLogger(__name__)
UPLOAD_OVERHEAD_BYTES = 64 * 1024  # multipart framing and form fields around an upload
ROUTES = [
    HealthController,
    MeController,
    DefaultsController,
    PresetController,
    GenerationController,
    NeighboursController,
    ImportController,
    ModelController,
    ClustersController,
    MapController,
    SearchController,
    PathController,
    DerivedController,
    TagsController,
    MetricsController,
    EventsController,
    WebhookController,
    WebController,
    STATIC_FILES,
]


def create_app(database_url: str, settings: Settings | None = None, run_worker_in_process: bool = False) -> Litestar:
    """Build the API for one database (the application-role URL); optionally with a worker beside it."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def runtime_lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = Runtime.create(database_url, settings)
        job_app = create_job_app(database_url, settings.jobs)
        app.state.update(
            engine=runtime.engine,
            sessionmaker=runtime.sessions,
            store=runtime.store,
            models=runtime.models,
            jobs=ProcrastinateQueue(job_app),
        )
        app.state.event_hub = EventHub(database_url, settings.database.connect_timeout)
        if isinstance(app.state.key_cache, KeyCache):  # in-process: revocations arrive by NOTIFY
            app.state.event_hub.follow_revocations(app.state.key_cache.drop)
        app.state.event_hub.follow(MODELS_CHANNEL, app.state.default_model.drop)  # registry changes, by NOTIFY
        async with opened(job_app, database_url, settings.database) as job_pool:
            app.state.job_pool = job_pool
            worker = asyncio.create_task(run_worker(job_app, runtime, False)) if run_worker_in_process else None
            app.state.worker = worker  # /ready reports it once it has stopped
            if worker is not None:
                worker.add_done_callback(_report_stopped)
            try:
                yield
            finally:
                await _stop(worker)
                await app.state.event_hub.close()
                await app.state.shared.close()
                await runtime.close()

    app = Litestar(
        route_handlers=ROUTES,
        before_request=check_request,
        dependencies={
            "db_engine": Provide(provide_engine, sync_to_thread=False),
            "db_session": Provide(provide_session),
            "caller": Provide(provide_caller, sync_to_thread=False),
            "jobs": Provide(provide_jobs, sync_to_thread=False),
        },
        middleware=[
            request_metrics().middleware,
            authentication_middleware,
            rate_limit(settings.server.rate_limit_per_minute).middleware,
        ],
        lifespan=[runtime_lifespan, replicas_lifespan(settings.database)],
        state=State({"settings": settings}),
        exception_handlers=EXCEPTION_HANDLERS,
        template_config=TEMPLATES,
        openapi_config=openapi_config(),
        debug=settings.server.debug,
        request_max_body_size=settings.storage.max_upload_bytes + UPLOAD_OVERHEAD_BYTES,
    )
    app.state.query_parameter_names = query_parameter_names(app)
    # shared with every API process through SOUNDALIKE_CACHE_URL (service.domain.access.shared_state), else in-process
    app.state.shared = SharedState.create(settings.cache.url, settings.cache.prefix, settings.auth.key_cache_seconds)
    app.state.key_cache = app.state.shared.key_cache
    app.state.default_model = DefaultModelCache()  # searches that name no model (service.domain.models.default_cache)
    # hot reads (presets by id, public neighbours) on the same shared server, else in-process (service.domain.cache)
    app.state.read_cache = ReadCache.create(app.state.shared.client, settings.cache.prefix)
    return app


def _report_stopped(worker: asyncio.Task) -> None:
    if not worker.cancelled() and (error := worker.exception()) is not None:
        log.error("the in-process job worker stopped: %r; /ready answers 503 until this process restarts", error)


async def _stop(worker: asyncio.Task | None) -> None:
    if worker is None or worker.done():  # one that stopped by itself was reported then; shutdown goes on
        return
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker


def provide_engine(state: State) -> AsyncEngine:
    return state.engine


def provide_jobs(state: State) -> JobQueue:
    return state.jobs


async def provide_session(state: State, request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request (a read replica's for reads, ``service.api.sessions``); handlers (through
    domain services) commit what they mean to keep."""
    async with request_session(state, request) as session:
        yield session

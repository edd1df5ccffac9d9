"""Liveness and readiness."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import ServiceUnavailableException
from litestar.openapi import ResponseSpec
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.problems import Problem
from service.db.server.checks import check_ready
from service.errors import DatabaseError


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    pgvector: str
    schema: str
    worker: str  # the in-process job worker: "running", or "none" when this process runs no worker
    cache: str  # rate limits and key cache: "redis" (SOUNDALIKE_CACHE_URL answers) or "in-process"


class HealthController(Controller):
    tags = ["health"]
    security = [{}]  # public: no key needed (an empty requirement overrides the document's bearer key)

    @get("/health", summary="Liveness: the process answers")
    async def health(self) -> Health:
        return Health(status="ok")

    @get(
        "/ready",
        summary="Readiness: database reachable, pgvector present, migrations at head, in-process worker alive, "
        "shared cache answering",
        responses={503: ResponseSpec(Problem, description="Not ready; `detail` says why and what to do")},
    )
    async def ready(self, db_engine: NamedDependency[AsyncEngine], state: State) -> Readiness:
        worker = state.get("worker")
        _refuse_a_stopped(worker)
        try:
            async with db_engine.connect() as conn:
                found = await conn.run_sync(check_ready)
        except DBAPIError as exc:
            raise DatabaseError(f"database unreachable: {str(exc.orig).strip().splitlines()[0]}") from None
        cache = await state.shared.ping()
        return Readiness(status="ready", worker="none" if worker is None else "running", cache=cache, **found)


def _refuse_a_stopped(worker: asyncio.Task | None) -> None:
    """A worker that stopped takes no more jobs: accepted work would never run, so the process is not ready."""
    if worker is None or not worker.done():
        return
    error = None if worker.cancelled() else worker.exception()
    error = error.__cause__ or error if error else None  # procrastinate wraps the database's error
    why = f"{type(error).__name__}: {_first_line(error)}" if error else "it ended"
    raise ServiceUnavailableException(
        f"the in-process job worker stopped ({why}); restart this process (were its tables restored under it?)"
    )


def _first_line(error: BaseException) -> str:
    return next(iter(str(error).strip().splitlines()), "no detail")

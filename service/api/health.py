"""Liveness and readiness."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.problems import Problem
from service.db.checks import check_ready
from service.errors import DatabaseError


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    pgvector: str
    schema: str


class HealthController(Controller):
    tags = ["health"]

    @get("/health", summary="Liveness: the process answers")
    async def health(self) -> Health:
        return Health(status="ok")

    @get(
        "/ready",
        summary="Readiness: database reachable, pgvector present, migrations at head",
        responses={503: ResponseSpec(Problem, description="Not ready; `detail` says why and what to do")},
    )
    async def ready(self, db_engine: NamedDependency[AsyncEngine]) -> Readiness:
        try:
            async with db_engine.connect() as conn:
                found = await conn.run_sync(check_ready)
        except DBAPIError as exc:
            raise DatabaseError(f"database unreachable: {str(exc.orig).strip().splitlines()[0]}") from None
        return Readiness(status="ready", **found)

"""/v1/generations/{id}/neighbours: the nearest public clips of a clip, served from the read cache."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, Parameter

from service.api.deps import CallerDep, SessionDep
from service.api.problems import Problem
from service.api.search import SearchResponse, to_hit
from service.domain.cache import neighbours as domain
from service.domain.discovery.search import MAX_LIMIT


class NeighboursController(Controller):
    path = "/v1/generations/{generation_id:uuid}/neighbours"
    tags = ["search"]

    @get(
        opt={"read_only": True},  # served by a read replica when there is one (service.api.sessions)
        summary="The nearest public clips of a clip you can see (cached; POST /v1/search also finds your private ones)",
        responses={
            404: ResponseSpec(Problem, description="Unknown, deleted, or another owner's private item"),
            409: ResponseSpec(Problem, description="The item has no latent yet"),
        },
    )
    async def neighbours(
        self,
        generation_id: FromPath[uuid.UUID],
        caller: CallerDep,
        db_session: SessionDep,
        state: State,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 10,
    ) -> SearchResponse:
        found = await domain.public_neighbours(db_session, caller, generation_id, limit, state.read_cache)
        return SearchResponse(
            model=found.model, items=[to_hit(hit, found.model) for hit in found.hits], next_cursor=None
        )

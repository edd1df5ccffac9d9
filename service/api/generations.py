"""/v1/generations: generate clips as jobs, read them, their audio and latent, cancel and delete."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import FromQuery, JSONBody, Parameter
from msgspec import Meta

from service.api.audio_response import audio_response
from service.api.auth import requires_role
from service.api.deps import CallerDep, GenerationId, JobsDep, SessionDep
from service.api.openapi_docs import one_of
from service.api.presets import PresetRef, generation_ask
from service.api.problems import Problem
from service.api.schemas import (
    BatchSize,
    Generation,
    GuidanceScale,
    ModelAlias,
    Prompt,
    Seed,
    Steps,
    Visibility,
    generation_url,
    to_generation,
)
from service.db.schema.models import GENERATION_KINDS, GENERATION_STATUSES
from service.domain.access.api_keys import Caller
from service.domain.cache import neighbours
from service.domain.catalogue import presets
from service.domain.generation import generations as domain

MAX_WAIT_SECONDS = 60
POLL_SECONDS = 0.2


class GenerationCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A field left out comes from ``preset``, then the caller's defaults (GET /v1/me/defaults), then the model."""

    prompt: Prompt | None = None  # required unless the preset has one
    seed: Seed | None = None
    steps: Steps | None = None
    guidance_scale: GuidanceScale | None = None
    model: ModelAlias | None = None
    batch_size: BatchSize | None = None
    visibility: Annotated[Visibility, Meta(description="Of the clips made; private when absent")] | None = None
    preset: PresetRef | None = None


class GenerationUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # a plain str checked by the domain, so another value is a 422 naming the field; the description names the values
    visibility: Annotated[str, Meta(description="`private` or `public`")]


class GenerationsAccepted(msgspec.Struct):
    ids: list[uuid.UUID]
    seed: int
    status: str
    status_urls: list[str]


class GenerationBatch(msgspec.Struct):
    items: list[Generation]


class GenerationPage(msgspec.Struct):
    items: list[Generation]
    next_cursor: str | None


class Latent(msgspec.Struct):
    id: uuid.UUID
    model: str
    dim: int
    values: list[float]


NOT_FOUND = ResponseSpec(Problem, description="Unknown, deleted, or another owner's private item")


class GenerationController(Controller):
    path = "/v1/generations"
    tags = ["generations"]

    @post(
        guards=[requires_role("creator")],
        status_code=202,
        summary="Generate clips from tags (queued as one job)",
        description="Answers 202 with the ids and their status URLs. With `?wait=SECONDS` (at most 60) it "
        "answers 200 with the finished generations if they finish in time.",
        responses={
            200: ResponseSpec(GenerationBatch, description="Finished within `wait`"),
            422: ResponseSpec(Problem, description="A field is out of range, an unknown tag or model"),
            429: ResponseSpec(Problem, description="The queue is full; see Retry-After"),
        },
    )
    async def create(
        self,
        data: JSONBody[GenerationCreate],
        caller: CallerDep,
        db_session: SessionDep,
        jobs: JobsDep,
        state: State,
        wait: Annotated[int, Parameter(ge=0, le=MAX_WAIT_SECONDS, description="Seconds to wait for the result")] = 0,
    ) -> Response[GenerationsAccepted | GenerationBatch]:
        request = await presets.text_to_music(db_session, caller, generation_ask(data), state.read_cache)
        rows = await domain.request_text_to_music(db_session, jobs, caller, request, state.settings.jobs.queue_limit)
        ids = [row.id for row in rows]
        if wait and (finished := await _wait_for(state, caller, ids, wait)):
            return Response(GenerationBatch(items=finished), status_code=200)
        accepted = GenerationsAccepted(
            ids=ids, seed=rows[0].seed, status="pending", status_urls=[generation_url(i) for i in ids]
        )
        return Response(accepted, status_code=202)

    @get(
        summary="The caller's generations, newest first (cursor pagination); many by id; an admin: any owner's",
        responses={403: ResponseSpec(Problem, description="owner names someone else and the key is not admin")},
    )
    async def list_generations(
        self,
        caller: CallerDep,
        db_session: SessionDep,
        ids: Annotated[
            list[uuid.UUID] | None,
            Parameter(max_items=100, description="Only these generations (visible ones, any owner): poll many at once"),
        ] = None,
        owner: Annotated[str | None, Parameter(min_length=1, description="Admin keys: this owner's items")] = None,
        status: Annotated[
            str | None,
            Parameter(description=f"One of {', '.join(GENERATION_STATUSES)}", schema_extra=one_of(GENERATION_STATUSES)),
        ] = None,
        kind: Annotated[
            str | None,
            Parameter(description=f"One of {', '.join(GENERATION_KINDS)}", schema_extra=one_of(GENERATION_KINDS)),
        ] = None,
        tags: Annotated[list[str] | None, Parameter(description="Items carrying all these tags")] = None,
        model: Annotated[str | None, Parameter(description="Model alias")] = None,
        created_after: FromQuery[datetime | None] = None,
        created_before: FromQuery[datetime | None] = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> GenerationPage:
        _check_vocabulary("status", status, GENERATION_STATUSES)
        _check_vocabulary("kind", kind, GENERATION_KINDS)
        filters = domain.GenerationFilter(
            ids=ids or [],
            owner=owner,
            status=status,
            kind=kind,
            tags=tags or [],
            model=model,
            created_after=created_after,
            created_before=created_before,
        )
        views, next_cursor = await domain.list_views(db_session, caller, filters, limit, cursor)
        return GenerationPage(items=[to_generation(v) for v in views], next_cursor=next_cursor)

    @get(
        "/{generation_id:uuid}",
        summary="One generation: status, params, model, timings, links",
        responses={404: NOT_FOUND},
    )
    async def get_generation(
        self,
        generation_id: GenerationId,
        caller: CallerDep,
        db_session: SessionDep,
    ) -> Generation:
        return to_generation(await domain.get_view(db_session, caller, generation_id))

    @get(
        "/{generation_id:uuid}/audio",
        summary="The clip: WAV, or FLAC with `Accept: audio/flac`; HTTP Range supported",
        responses={404: NOT_FOUND, 416: ResponseSpec(Problem, description="Unsatisfiable range")},
        media_type="audio/wav",
    )
    async def get_audio(
        self,
        request: Request,
        generation_id: GenerationId,
        caller: CallerDep,
        db_session: SessionDep,
        state: State,
    ) -> Response[bytes]:
        asset = await domain.audio_asset(db_session, caller, generation_id)
        return await audio_response(request, state.store, asset)

    @get("/{generation_id:uuid}/latent", summary="The 512-d latent", responses={404: NOT_FOUND})
    async def get_latent(
        self,
        generation_id: GenerationId,
        caller: CallerDep,
        db_session: SessionDep,
    ) -> Latent:
        view, values = await domain.latent(db_session, caller, generation_id)
        return Latent(id=generation_id, model=view.model.alias, dim=len(values), values=values)

    @post(
        "/{generation_id:uuid}/cancel",
        guards=[requires_role("creator")],
        status_code=200,
        summary="Cancel pending or running work",
        responses={404: NOT_FOUND, 409: ResponseSpec(Problem, description="Already finished")},
    )
    async def cancel(
        self,
        generation_id: GenerationId,
        caller: CallerDep,
        db_session: SessionDep,
        jobs: JobsDep,
    ) -> Generation:
        await domain.cancel(db_session, jobs, caller, generation_id)
        return to_generation(await domain.get_view(db_session, caller, generation_id))

    @patch(
        "/{generation_id:uuid}",
        guards=[requires_role("creator")],
        summary="Change an item's visibility (its owner, or an admin)",
        responses={404: NOT_FOUND, 422: ResponseSpec(Problem, description="visibility is not private or public")},
    )
    async def update_generation(
        self,
        generation_id: GenerationId,
        data: JSONBody[GenerationUpdate],
        caller: CallerDep,
        db_session: SessionDep,
        state: State,
    ) -> Generation:
        await domain.set_visibility(db_session, caller, generation_id, data.visibility)
        await neighbours.forget_all(state.read_cache)  # the item joins or leaves public neighbour lists
        return to_generation(await domain.get_view(db_session, caller, generation_id))

    @delete(
        "/{generation_id:uuid}",
        guards=[requires_role("creator")],
        summary="Soft delete: gone from every listing and search at once; the file goes with the lifecycle job",
        responses={404: NOT_FOUND},
    )
    async def delete_generation(
        self,
        generation_id: GenerationId,
        caller: CallerDep,
        db_session: SessionDep,
        jobs: JobsDep,
        state: State,
    ) -> None:
        await domain.soft_delete(db_session, jobs, caller, generation_id)
        await neighbours.forget_all(state.read_cache)


async def _wait_for(state: State, caller: Caller, ids: list[uuid.UUID], seconds: int) -> list[Generation] | None:
    """The generations once all are finished, or None when ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        async with state.sessionmaker() as session:
            views = await domain.get_views(session, caller, ids)
        if all(view.row.status in domain.TERMINAL_STATUSES for view in views):
            return [to_generation(view) for view in views]
        await asyncio.sleep(POLL_SECONDS)
    return None


def _check_vocabulary(field: str, value: str | None, allowed: tuple[str, ...]) -> None:
    from service.domain.errors import InvalidInput

    if value is not None and value not in allowed:
        raise InvalidInput(field, f"{field} must be one of {', '.join(allowed)}; got {value!r}", source="query")

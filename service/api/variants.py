"""Derived work: style transfer after a neighbour, batches of variants, batch progress, lineage."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody
from msgspec import Meta

from service.api.auth import requires_role
from service.api.deps import CallerDep, GenerationId, JobsDep, SessionDep
from service.api.generations import NOT_FOUND
from service.api.openapi_docs import bounds
from service.api.problems import Problem
from service.api.schemas import Generation, Seed, Visibility, to_generation
from service.api.search import SearchFilter, SearchRequest
from service.domain.catalogue import lineage
from service.domain.discovery.search import MAX_LIMIT
from service.domain.generation import generations, variants
from service.domain.generation.variants import MAX_PER_SOURCE, NEAR_DUPLICATE_SIMILARITY

Steps = Annotated[int, Meta(ge=1, le=200, description="Diffusion sampling steps (the model's default when absent)")]
TransferSteps = Annotated[int, Meta(ge=1, le=200, description="Ignored: a style transfer runs no sampler (steps 0)")]
BAD_INPUT = ResponseSpec(Problem, description="A value out of range, sources of two models, over the cap")


class StyleTransferCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    neighbor_id: Annotated[uuid.UUID | None, Meta(description="The clip whose timbre to take")] = None
    neighbor_rank: Annotated[
        int | None, Meta(description="Else the k-th nearest visible neighbour (default 1)"), bounds(1, MAX_LIMIT)
    ] = None
    strength: Annotated[
        float | None,
        Meta(description="0-1: 0 keeps the source, more takes more of the style's timbre (the model's default)"),
        bounds(0.0, 1.0),
    ] = None
    seed: Seed | None = None
    steps: TransferSteps | None = None
    filter: Annotated[SearchFilter, Meta(description="Filters for choosing the neighbour by rank")] = msgspec.field(
        default_factory=SearchFilter
    )
    near_duplicate_similarity: Annotated[
        float, Meta(description="Neighbours at least this similar are skipped"), bounds(-1.0, 1.0)
    ] = NEAR_DUPLICATE_SIMILARITY
    visibility: Visibility = "private"


class VariantsCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    ids: Annotated[list[uuid.UUID] | None, Meta(description="Source generations")] = None
    search: Annotated[SearchRequest | None, Meta(description="Or: the results of this search are the sources")] = None
    cluster_id: Annotated[int | None, Meta(description="Or: the visible members of this cluster")] = None
    cluster_limit: Annotated[int, Meta(ge=1, description="With cluster_id: its N most central members")] | None = None
    n_per_source: Annotated[int, Meta(description="Variants per source, 1-16"), bounds(1, MAX_PER_SOURCE)] = 4
    variance: Annotated[float, Meta(description="0 = identical, 1 = unrelated (retake variance)"), bounds(0.0, 1.0)] = (
        0.3
    )
    seed: Seed | None = None
    steps: Steps | None = None
    visibility: Visibility = "private"


class BatchStatus(msgspec.Struct):
    id: uuid.UUID
    kind: str
    status: str
    total: int
    done: int
    failed: int
    cancelled: int
    pending: int
    running: int
    params: dict[str, Any]
    created_at: datetime
    cancelled_at: datetime | None
    generation_ids: list[uuid.UUID]
    url: str


class LineageEntry(msgspec.Struct):
    depth: int
    relation: str
    generation: Generation


class LineageResponse(msgspec.Struct):
    generation: Generation
    ancestors: list[LineageEntry]
    descendants: list[LineageEntry]


def to_batch(view: variants.BatchView) -> BatchStatus:
    c, b = view.counts, view.batch
    return BatchStatus(
        id=b.id,
        kind=b.kind,
        status=view.status,
        total=b.total,
        done=c["succeeded"],
        failed=c["failed"],
        cancelled=c["cancelled"],
        pending=c["pending"],
        running=c["running"],
        params=b.params,
        created_at=b.created_at,
        cancelled_at=b.cancelled_at,
        generation_ids=view.generation_ids,
        url=f"/v1/batches/{b.id}",
    )


def to_entries(relatives: list[lineage.Relative]) -> list[LineageEntry]:
    return [LineageEntry(depth=r.depth, relation=r.relation, generation=to_generation(r.view)) for r in relatives]


class DerivedController(Controller):
    path = "/v1"
    tags = ["variants"]

    @post(
        "/generations/{generation_id:uuid}/style-transfer",
        guards=[requires_role("creator")],
        status_code=202,
        summary="Restyle a clip after a neighbour: keep its melody and rhythm, take the neighbour's timbre",
        responses={404: NOT_FOUND, 422: BAD_INPUT},
    )
    async def style_transfer(
        self,
        generation_id: GenerationId,
        data: JSONBody[StyleTransferCreate],
        caller: CallerDep,
        db_session: SessionDep,
        jobs: JobsDep,
        state: State,
    ) -> Generation:
        fields = msgspec.structs.asdict(data)
        request = variants.StyleTransfer(**{**fields, "filter": data.filter.to_domain()})
        row = await variants.request_style_transfer(
            db_session, jobs, caller, generation_id, request, state.settings.jobs.queue_limit
        )
        return to_generation(await generations.get_view(db_session, caller, row.id))

    @post(
        "/variants",
        guards=[requires_role("creator")],
        status_code=202,
        summary="Regenerate variants of many sources as one batch (ids, a search, or a cluster)",
        responses={404: NOT_FOUND, 422: BAD_INPUT},
    )
    async def create_variants(
        self, data: JSONBody[VariantsCreate], caller: CallerDep, db_session: SessionDep, jobs: JobsDep, state: State
    ) -> BatchStatus:
        fields = msgspec.structs.asdict(data)
        request = variants.VariantsRequest(**{**fields, "search": data.search.to_domain() if data.search else None})
        settings = state.settings.jobs
        view = await variants.request_variants(
            db_session,
            jobs,
            caller,
            request,
            settings.max_variants_per_batch,
            settings.variant_chunk_size,
            settings.queue_limit,
        )
        return to_batch(view)

    @get("/batches/{batch_id:uuid}", summary="A batch's progress", responses={404: NOT_FOUND})
    async def get_batch(self, batch_id: FromPath[uuid.UUID], caller: CallerDep, db_session: SessionDep) -> BatchStatus:
        return to_batch(await variants.get_batch(db_session, caller, batch_id))

    @post(
        "/batches/{batch_id:uuid}/cancel",
        guards=[requires_role("creator")],
        status_code=200,
        summary="Cancel a batch's pending and running variants",
        responses={404: NOT_FOUND, 409: ResponseSpec(Problem, description="Already finished")},
    )
    async def cancel_batch(
        self, batch_id: FromPath[uuid.UUID], caller: CallerDep, db_session: SessionDep, jobs: JobsDep
    ) -> BatchStatus:
        return to_batch(await variants.cancel_batch(db_session, jobs, caller, batch_id))

    @get(
        "/generations/{generation_id:uuid}/lineage",
        summary="Ancestors (parents, style neighbours) and descendants (variants, transfers)",
        responses={404: NOT_FOUND},
    )
    async def get_lineage(
        self, generation_id: GenerationId, caller: CallerDep, db_session: SessionDep
    ) -> LineageResponse:
        found = await lineage.lineage(db_session, caller, generation_id)
        return LineageResponse(
            generation=to_generation(found.generation),
            ancestors=to_entries(found.ancestors),
            descendants=to_entries(found.descendants),
        )

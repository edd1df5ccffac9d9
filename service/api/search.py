"""/v1/search: "sounds like this" by generation id, vector, uploaded audio, or liked/disliked examples."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State, UploadFile
from litestar.exceptions import ValidationException
from litestar.openapi import ResponseSpec
from litestar.params import QueryParameter
from msgspec import Meta

from service.api.deps import CallerDep, SessionDep
from service.api.openapi_docs import bounds, items
from service.api.problems import Problem, field_in_message
from service.api.schemas import Generation, Visibility, generation_url, to_generation
from service.db.schema.models import GENERATION_KINDS, LATENT_DIM
from service.domain.catalogue.imports import analyse_clip, decode_upload
from service.domain.discovery import search as domain
from service.domain.discovery import song_path as paths
from service.domain.generation import generations
from service.domain.models.model_archive import ensure_searchable
from service.domain.models.model_lookup import resolve_model

Kind = Literal[GENERATION_KINDS]  # type: ignore[valid-type]


class Range(msgspec.Struct, forbid_unknown_fields=True):
    gte: float | None = None
    lte: float | None = None


class SearchFilter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    tags_all: Annotated[list[str], Meta(description="Items carrying all these tags")] = []
    tags_any: Annotated[list[str], Meta(description="Items carrying at least one of these tags")] = []
    tempo: Annotated[Range | None, Meta(description="Tempo range in bpm (from tags like `90 bpm`)")] = None
    params: Annotated[dict[str, Range], Meta(description="Ranges over numeric generation params")] = {}
    kind: Kind | None = None
    mine: Annotated[bool, Meta(description="Only the caller's own items")] = False
    visibility: Visibility | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    exclude_ids: list[uuid.UUID] = []
    cluster_id: Annotated[int | None, Meta(description="Only members of this cluster (see /v1/clusters)")] = None
    in_domain_only: Annotated[
        bool, Meta(description="Leave out imports the model flagged as not music (`in_domain_ok` false)")
    ] = False

    def to_domain(self) -> domain.SearchFilter:
        def rng(r: Range | None) -> domain.NumericRange | None:
            return None if r is None else domain.NumericRange(gte=r.gte, lte=r.lte)

        fields = msgspec.structs.asdict(self)
        fields["tempo"] = rng(self.tempo)
        fields["params"] = {name: rng(value) for name, value in self.params.items()}
        return domain.SearchFilter(**fields)


class SearchRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    generation_id: Annotated[uuid.UUID | None, Meta(description="Search like this generation (itself excluded)")] = None
    vector: Annotated[list[float] | None, Meta(description="A raw latent of the searched model"), items(LATENT_DIM)] = (
        None
    )
    positive: Annotated[list[uuid.UUID], Meta(description="Liked examples")] = []
    negative: Annotated[list[uuid.UUID], Meta(description="Disliked examples (with positive)")] = []
    strategy: Literal["average_vector", "best_score"] = "average_vector"
    model: Annotated[str | None, Meta(description="Model alias; a generation id fixes it; default model")] = None
    filter: SearchFilter = msgspec.field(default_factory=SearchFilter)
    limit: Annotated[int, bounds(1, domain.MAX_LIMIT)] = 10
    cursor: str | None = None
    score_threshold: Annotated[float | None, Meta(description="Minimum cosine similarity"), bounds(-1.0, 1.0)] = None
    diversity: Annotated[
        float | None, Meta(description="MMR: 0 = relevance only, 1 = diversity only"), bounds(0.0, 1.0)
    ] = None
    exact: Annotated[bool, Meta(description="Exact scan for evaluation (admin only)")] = False
    group_by: Annotated[
        Literal["cluster", "item", "none"] | None,
        Meta(
            description="`cluster`: group hits by cluster of the model's active clustering run (`limit` counts "
            "groups). With `segments`: `item` (the default: one hit per item with its nearest windows) or `none` "
            "(the nearest windows)"
        ),
    ] = None
    group_size: Annotated[
        int, Meta(description="Hits per group with group_by, windows per item (1-10)"), bounds(1, domain.MAX_GROUP_SIZE)
    ] = 3
    segments: Annotated[
        bool, Meta(description="Search the windows of long files: hits carry the matching (start, end) windows")
    ] = False
    audio_query: Annotated[
        Literal["pooled", "windows"],
        Meta(description="An uploaded query: searched whole (`pooled`) or window by window (`windows`)"),
    ] = "pooled"

    def to_domain(self) -> domain.SearchQuery:
        fields = msgspec.structs.asdict(self)
        fields["filter"] = self.filter.to_domain()
        return domain.SearchQuery(**fields)


class SegmentHit(msgspec.Struct):
    start: Annotated[float, Meta(description="Seconds into the item")]
    end: float
    score: float
    query_start: Annotated[float | None, Meta(description="audio_query=windows: the query's matching window")]
    query_end: float | None


class InDomainOut(msgspec.Struct):
    score: Annotated[float, Meta(description="How much the query sounds like music the model knows (0-1)")]
    threshold: Annotated[float, Meta(description="The model's calibrated threshold (registry)")]
    ok: Annotated[bool, Meta(description="score >= threshold; false: expect nothing truly similar")]


class SearchHit(msgspec.Struct):
    id: uuid.UUID
    score: float
    similarity: float | None
    distance: float | None
    tags: list[str]
    kind: str
    model: str
    owner: str
    visibility: str
    created_at: datetime
    audio_url: str | None
    url: str
    segments: Annotated[
        list[SegmentHit] | None, Meta(description="With segments: the item's matching windows, nearest first")
    ] = None
    query_start: Annotated[float | None, Meta(description="audio_query=windows: the best query window")] = None
    query_end: float | None = None


class SearchGroup(msgspec.Struct):
    cluster_id: Annotated[int | None, Meta(description="None: items newer than the clustering run")]
    label: int | None
    items: list[SearchHit]


class SearchResponse(msgspec.Struct):
    model: str
    items: Annotated[list[SearchHit], Meta(description="With group_by: every group's items, group after group")]
    next_cursor: str | None
    groups: list[SearchGroup] | None = None
    in_domain: Annotated[InDomainOut | None, Meta(description="Audio queries: the model's verdict on the upload")] = (
        None
    )


def to_response(result: domain.SearchResult) -> SearchResponse:
    alias = result.model.alias
    groups = None
    if result.groups is not None:
        groups = [
            SearchGroup(cluster_id=g.cluster_id, label=g.label, items=[to_hit(h, alias) for h in g.hits])
            for g in result.groups
        ]
    verdict = result.in_domain
    in_domain = None if verdict is None else InDomainOut(verdict.score, verdict.threshold, verdict.ok)
    return SearchResponse(
        model=alias,
        items=[to_hit(h, alias) for h in result.hits],
        next_cursor=result.next_cursor,
        groups=groups,
        in_domain=in_domain,
    )


def to_hit(hit: domain.Hit, model: str) -> SearchHit:
    url = generation_url(hit.generation_id)
    return SearchHit(
        id=hit.generation_id,
        score=hit.score,
        similarity=None if hit.distance is None else 1.0 - hit.distance,
        distance=hit.distance,
        tags=hit.tags,
        kind=hit.kind,
        model=model,
        owner=hit.owner,
        visibility=hit.visibility,
        created_at=hit.created_at,
        audio_url=f"{url}/audio" if hit.has_audio else None,
        url=url,
        segments=to_segments(hit.segments),
        query_start=hit.query_start,
        query_end=hit.query_end,
    )


def to_segments(matches: list[domain.SegmentMatch] | None) -> list[SegmentHit] | None:
    if matches is None:
        return None
    return [SegmentHit(m.start, m.end, m.score, m.query_start, m.query_end) for m in matches]


def parse_body(raw: bytes | str, into: type[msgspec.Struct]) -> msgspec.Struct:
    """msgspec's JSON reader, or Python's where msgspec's refuses (Python's reads NaN and Infinity, which the
    domain then refuses by field name; it is ~7x slower on a 512-d vector), then msgspec's typed conversion; every
    failure is a 400 naming the field."""
    try:
        data = msgspec.json.decode(raw or b"{}")
    except msgspec.DecodeError:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ValidationException(f"the body is not valid JSON ({exc})") from None
    try:
        return msgspec.convert(data, into, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = field_in_message(message)
        raise ValidationException(message, extra=[{"key": field, "message": message, "source": "body"}]) from None


class PathStop(msgspec.Struct):
    position: float
    similarity: float
    generation: Generation


class SongPath(msgspec.Struct):
    model: str
    stops: list[PathStop]


class SearchController(Controller):
    path = "/v1/search"
    tags = ["search"]

    @post(
        status_code=200,
        opt={"read_only": True},  # served by a read replica when there is one (service.api.sessions)
        summary="Find clips that sound like a generation, a vector, an uploaded clip, or liked/disliked examples",
        description="JSON body (`SearchRequest`), or `multipart/form-data` with `file` (WAV/FLAC/OGG/MP3, encoded with "
        "the searched model) and an optional `query` field holding the same JSON without a query kind.",
        responses={
            400: ResponseSpec(Problem, description="Malformed body; a field of the wrong type"),
            403: ResponseSpec(Problem, description="exact=true without the admin role"),
            404: ResponseSpec(Problem, description="An unknown or invisible generation id, an unknown cluster"),
            409: ResponseSpec(Problem, description="group_by=cluster for a model that was never clustered"),
            422: ResponseSpec(Problem, description="Two query kinds or none, a bad vector, a value out of range"),
        },
    )
    async def search(self, request: Request, caller: CallerDep, db_session: SessionDep, state: State) -> SearchResponse:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            return await self._search_audio(request, caller, db_session, state)
        body = parse_body(await request.body(), SearchRequest)
        return to_response(await domain.search(db_session, caller, body.to_domain(), defaults=state.default_model))

    async def _search_audio(self, request: Request, caller, db_session, state: State) -> SearchResponse:
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationException(
                "multipart search needs a `file` field",
                extra=[{"key": "file", "message": "missing audio file", "source": "body"}],
            )
        query = parse_body(form.get("query") or "{}", SearchRequest).to_domain()
        domain.check_query(query, caller, has_audio=True)
        limits = state.settings.storage
        raw = await upload.read()
        clip = await asyncio.to_thread(
            decode_upload, raw, upload.filename, limits.max_upload_bytes, limits.max_upload_seconds
        )
        if query.model:
            model = ensure_searchable(await resolve_model(db_session, query.model))
        else:
            model = await state.default_model.get(db_session)
        audio = await analyse_clip(state.models, model, clip, upload.filename)
        return to_response(await domain.search(db_session, caller, query, audio=audio, defaults=state.default_model))


class PathController(Controller):
    path = "/v1/path"
    tags = ["search"]

    @get(
        summary="A walk from one track to another through neighbours (each stop near the line between them)",
        responses={
            404: ResponseSpec(Problem, description="An unknown or invisible generation"),
            422: ResponseSpec(Problem, description="The two tracks are in different models; steps out of range"),
        },
    )
    async def song_path(
        self,
        caller: CallerDep,
        db_session: SessionDep,
        start: Annotated[uuid.UUID, QueryParameter(name="from", description="The first track")],
        end: Annotated[uuid.UUID, QueryParameter(name="to", description="The last track")],
        steps: Annotated[
            int,
            QueryParameter(
                description="Tracks in the path, both ends included (3-50)",
                schema_extra={"minimum": paths.MIN_PATH_STEPS, "maximum": paths.MAX_PATH_STEPS},
            ),
        ] = 10,
    ) -> SongPath:
        model, stops = await paths.song_path(db_session, caller, start, end, steps)
        views = {v.row.id: v for v in await generations.get_views(db_session, caller, [s.generation_id for s in stops])}
        return SongPath(
            model=model.alias,
            stops=[
                PathStop(position=s.position, similarity=s.similarity, generation=to_generation(views[s.generation_id]))
                for s in stops
            ],
        )

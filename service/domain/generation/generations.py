"""Generations as the API sees them: request, read, list, cancel, delete.

Creating work is two steps: rows are committed as ``pending``, then one job per request is deferred and its
id recorded. A crash between the two leaves pending rows with no job; the sweep defers them
(``service.domain.generation.production.defer_orphaned``), so no request is lost.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import VISIBILITIES, ArchivedLatent, AudioAsset, Generation, LatentEmbedding, Model
from service.domain.access.api_keys import Caller
from service.domain.access.visibility import owned_by, visible_to
from service.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, QueueFull
from service.domain.generation import sampling
from service.domain.models.model_lookup import resolve_model
from service.domain.pagination import encode_cursor, older_than
from service.domain.ports import JobQueue
from service.ml.tags import normalise_tags  # the tag vocabulary; no model weights are loaded

MAX_SEED = 2**31 - 1
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
RETRY_AFTER_SECONDS = 10


@dataclass(frozen=True)
class TextToMusic:
    prompt: str
    steps: int | None = None  # None: the model's defaults (service.domain.generation.sampling), recorded in params
    guidance_scale: float | None = None
    batch_size: int = 1
    seed: int | None = None
    model: str | None = None
    visibility: str = "private"


@dataclass(frozen=True)
class GenerationFilter:
    ids: list[uuid.UUID] = field(default_factory=list)  # these (visible) generations, any owner
    owner: str | None = None  # admins: another owner's generations
    status: str | None = None
    kind: str | None = None
    tags: list[str] = field(default_factory=list)
    model: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class GenerationView:
    """A generation with what a client needs to show it: its model and whether audio/latent exist."""

    row: Generation
    model: Model
    has_audio: bool
    has_latent: bool


async def request_text_to_music(
    session: AsyncSession, jobs: JobQueue, caller: Caller, request: TextToMusic, queue_limit: int
) -> list[Generation]:
    """Validate, store ``batch_size`` pending generations (seeds seed, seed+1, ...) and queue one job."""
    from service.ml.tags import parse_prompt  # the tag vocabulary; no model weights are loaded

    parsed = parse_prompt(request.prompt)
    model = await resolve_model(session, request.model, for_new_work=True)
    await ensure_queue_room(session, request.batch_size, queue_limit)
    seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED - request.batch_size)
    if seed + request.batch_size - 1 > MAX_SEED:
        raise InvalidInput("seed", f"seed + batch_size - 1 must be <= {MAX_SEED}; got seed={seed}")
    defaults = sampling.of_model(model.metadata_)
    params = {
        "prompt": request.prompt,
        "steps": defaults.steps if request.steps is None else request.steps,
        "guidance_scale": defaults.guidance_scale if request.guidance_scale is None else request.guidance_scale,
    }
    rows = [
        Generation(
            owner=caller.owner,
            model_id=model.id,
            kind="text2music",
            status="pending",
            seed=seed + i,
            params={**params, "batch_index": i},
            visibility=request.visibility,
            tags=list(parsed.tags),
        )
        for i in range(request.batch_size)
    ]
    session.add_all(rows)
    await session.commit()
    await enqueue(session, jobs, [row.id for row in rows])
    return rows


async def enqueue(session: AsyncSession, jobs: JobQueue, generation_ids: list[uuid.UUID]) -> int:
    """Queue one job for these generations and remember it on them."""
    job_id = await jobs.defer_generation(generation_ids)
    await session.execute(update(Generation).where(Generation.id.in_(generation_ids)).values(job_id=job_id))
    await session.commit()
    return job_id


async def ensure_queue_room(session: AsyncSession, wanted: int, queue_limit: int, field: str = "batch_size") -> None:
    """429 while the queue is too full for ``wanted`` more; 422 (on ``field``) when it never could hold them."""
    if wanted > queue_limit:
        never = f"the queue never holds more than {queue_limit} (SOUNDALIKE_JOBS_QUEUE_LIMIT)"
        raise InvalidInput(field, f"this request makes {wanted} generations and {never}; ask for fewer")
    pending = await session.scalar(select(func.count()).where(Generation.status == "pending"))
    if pending + wanted > queue_limit:
        raise QueueFull(
            f"the queue is full ({pending} generations waiting, limit {queue_limit}); retry in a few seconds",
            RETRY_AFTER_SECONDS,
        )


async def get_view(session: AsyncSession, caller: Caller, generation_id: uuid.UUID) -> GenerationView:
    views = await _views(session, select(Generation).where(Generation.id == generation_id, visible_to(caller)))
    if not views:
        raise NotFound(f"no generation {generation_id}")
    return views[0]


async def get_views(session: AsyncSession, caller: Caller, ids: list[uuid.UUID]) -> list[GenerationView]:
    views = await _views(session, select(Generation).where(Generation.id.in_(ids), visible_to(caller)))
    by_id = {view.row.id: view for view in views}
    return [by_id[i] for i in ids if i in by_id]


async def list_views(
    session: AsyncSession, caller: Caller, filters: GenerationFilter, limit: int, cursor: str | None
) -> tuple[list[GenerationView], str | None]:
    """The caller's own generations (or ``filters.ids``, or an admin's ``filters.owner``'s), newest first, one
    page after ``cursor``."""
    query = select(Generation).where(_scope(caller, filters), Generation.deleted_at.is_(None))
    query = _apply_filters(query, filters)
    after = older_than(Generation.created_at, Generation.id, cursor)
    if after is not None:
        query = query.where(after)
    if filters.model:
        model = await resolve_model(session, filters.model)
        query = query.where(Generation.model_id == model.id)
    query = query.order_by(Generation.created_at.desc(), Generation.id.desc()).limit(limit + 1)
    views = await _views(session, query)
    page, more = views[:limit], len(views) > limit
    next_cursor = encode_cursor(page[-1].row.created_at, page[-1].row.id) if more and page else None
    return page, next_cursor


def _scope(caller: Caller, filters: GenerationFilter) -> ColumnElement[bool]:
    """Whose generations a listing shows: the given ids (visible ones, any owner), else one owner's."""
    owner = filters.owner or caller.owner
    if owner != caller.owner and not caller.is_admin:
        raise Forbidden(f"only admin keys list another owner's generations; your key lists {caller.owner!r}'s")
    by_owner = Generation.owner == owner
    if filters.ids:
        return and_(Generation.id.in_(filters.ids), visible_to(caller), by_owner if filters.owner else true())
    return by_owner


def _apply_filters(query: Select, filters: GenerationFilter) -> Select:
    if filters.status:
        query = query.where(Generation.status == filters.status)
    if filters.kind:
        query = query.where(Generation.kind == filters.kind)
    if filters.tags:
        query = query.where(Generation.tags.contains(normalise_tags(filters.tags)))
    if filters.created_after:
        query = query.where(Generation.created_at >= filters.created_after)
    if filters.created_before:
        query = query.where(Generation.created_at < filters.created_before)
    return query


def audio_exists(generation_id) -> ColumnElement[bool]:
    """Whether the generation ``generation_id`` (a column or a value) has its audio stored."""
    return select(AudioAsset.id).where(AudioAsset.generation_id == generation_id).exists()


async def _views(session: AsyncSession, query: Select) -> list[GenerationView]:
    has_audio = audio_exists(Generation.id)
    has_latent = (
        select(LatentEmbedding.id).where(LatentEmbedding.generation_id == Generation.id).exists()
        | select(ArchivedLatent.id).where(ArchivedLatent.generation_id == Generation.id).exists()
    )
    query = query.join(Model, Model.id == Generation.model_id).add_columns(Model, has_audio, has_latent)
    rows = await session.execute(query)
    return [GenerationView(row=g, model=m, has_audio=audio, has_latent=lat) for g, m, audio, lat in rows]


async def cancel(session: AsyncSession, jobs: JobQueue, caller: Caller, generation_id: uuid.UUID) -> Generation:
    row = await session.scalar(select(Generation).where(Generation.id == generation_id, owned_by(caller)))
    if row is None:
        raise NotFound(f"no generation {generation_id}")
    if row.status in TERMINAL_STATUSES:
        raise Conflict(f"generation {generation_id} is already {row.status}; only pending or running work cancels")
    row.status, row.finished_at = "cancelled", datetime.now(UTC)
    await session.commit()
    await cancel_job_if_done(session, jobs, row.job_id)
    return row


async def cancel_job_if_done(session: AsyncSession, jobs: JobQueue, job_id: int | None) -> None:
    """Cancel a job once none of its generations is left to make: one job makes every clip of a request, so
    cancelling one clip must leave the job to its siblings (its claim skips the cancelled clip)."""
    if job_id is None:
        return
    left = await session.scalar(
        select(func.count()).where(Generation.job_id == job_id, Generation.status.in_(("pending", "running")))
    )
    if not left:
        await jobs.cancel(job_id)


_cancelled_unless_finished = case((Generation.status.in_(("pending", "running")), "cancelled"), else_=Generation.status)


async def soft_delete(session: AsyncSession, jobs: JobQueue, caller: Caller, generation_id: uuid.UUID) -> None:
    """Gone from every listing and search at once; the lifecycle job removes the file later."""
    result = await session.execute(
        update(Generation)
        .where(Generation.id == generation_id, owned_by(caller))
        .values(deleted_at=datetime.now(UTC), status=_cancelled_unless_finished)
        .returning(Generation.job_id, Generation.status)
    )
    found = result.one_or_none()
    if found is None:
        raise NotFound(f"no generation {generation_id}")
    await session.commit()
    job_id, _ = found
    await cancel_job_if_done(session, jobs, job_id)


async def set_visibility(session: AsyncSession, caller: Caller, generation_id: uuid.UUID, visibility: str) -> None:
    """Make the caller's own item (an admin: anyone's) public or private. Searches, listings, clusters and the
    map read the visibility from the row, so the change holds for the next request."""
    if visibility not in VISIBILITIES:
        raise InvalidInput("visibility", f"visibility must be one of {', '.join(VISIBILITIES)}; got {visibility!r}")
    result = await session.execute(
        update(Generation)
        .where(Generation.id == generation_id, owned_by(caller))
        .values(visibility=visibility)
        .returning(Generation.id)
    )
    if result.one_or_none() is None:
        raise NotFound(f"no generation {generation_id}")
    await session.commit()


async def audio_asset(session: AsyncSession, caller: Caller, generation_id: uuid.UUID) -> AudioAsset:
    await get_view(session, caller, generation_id)
    asset = await session.scalar(select(AudioAsset).where(AudioAsset.generation_id == generation_id))
    if asset is None:
        raise NotFound(f"generation {generation_id} has no audio (yet)")
    return asset


async def latent(session: AsyncSession, caller: Caller, generation_id: uuid.UUID) -> tuple[GenerationView, list[float]]:
    """The generation (visible to the caller) and its latent in the producing model's space, live or archived
    (a re-encode may have given it latents in other spaces too)."""
    view = await get_view(session, caller, generation_id)
    for table in (LatentEmbedding, ArchivedLatent):
        vector = await session.scalar(
            select(table.embedding).where(table.generation_id == generation_id, table.model_id == view.row.model_id)
        )
        if vector is not None:
            return view, [float(x) for x in vector]
    raise NotFound(f"generation {generation_id} has no latent (yet)")


def timings(row: Generation) -> dict[str, Any]:
    """Seconds spent queued, running, and in total (None while unknown)."""

    def seconds(start: datetime | None, end: datetime | None) -> float | None:
        return round((end - start).total_seconds(), 3) if start and end else None

    return {
        "queued_seconds": seconds(row.created_at, row.started_at),
        "run_seconds": seconds(row.started_at, row.finished_at),
        "total_seconds": seconds(row.created_at, row.finished_at),
    }

"""Derived work: style transfer after a neighbour, and batches of variants of many sources.

Both create pending generations (kind ``style_transfer`` / ``variant``) with ``parent_id`` (and ``neighbor_id``)
in one commit, then queue jobs; the workers produce them like any generation (``service.domain.generation.production``).
A variants batch is split into jobs of ``variant_chunk_size`` rows, sources kept together so each job makes
one batched model call per source. A batch's progress is counted from its generations.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import Batch, Generation, Model
from service.domain.access.api_keys import Caller
from service.domain.access.visibility import owned_by
from service.domain.discovery import clusters, search
from service.domain.errors import Conflict, InvalidInput, NotFound
from service.domain.generation import sampling
from service.domain.generation.generations import MAX_SEED, cancel_job_if_done, enqueue, ensure_queue_room
from service.domain.models import reencode
from service.domain.ports import JobQueue
from service.ml.tags import with_instruments_of

MAX_PER_SOURCE = 16
NEAR_DUPLICATE_SIMILARITY = 0.999


@dataclass(frozen=True)
class StyleTransfer:
    neighbor_id: uuid.UUID | None = None
    neighbor_rank: int | None = None
    strength: float | None = None  # None: the model's default (service.domain.generation.sampling)
    seed: int | None = None
    steps: int | None = None
    filter: search.SearchFilter = search.SearchFilter()
    near_duplicate_similarity: float = NEAR_DUPLICATE_SIMILARITY
    visibility: str = "private"


@dataclass(frozen=True)
class VariantsRequest:
    ids: list[uuid.UUID] | None = None
    search: search.SearchQuery | None = None
    cluster_id: int | None = None
    cluster_limit: int | None = None  # the cluster's most central members only
    n_per_source: int = 4
    variance: float = 0.3
    seed: int | None = None
    steps: int | None = None
    visibility: str = "private"


@dataclass(frozen=True)
class BatchView:
    batch: Batch
    counts: dict[str, int]
    generation_ids: list[uuid.UUID]

    @property
    def status(self) -> str:
        c = self.counts
        if self.batch.cancelled_at is not None:
            return "cancelled"
        if c["pending"] + c["running"] > 0:
            return "pending" if c["pending"] == self.batch.total else "running"
        if c["succeeded"] == self.batch.total:
            return "succeeded"
        return "failed" if c["succeeded"] == 0 else "partial"


async def request_style_transfer(
    session: AsyncSession,
    jobs: JobQueue,
    caller: Caller,
    source_id: uuid.UUID,
    request: StyleTransfer,
    queue_limit: int,
) -> Generation:
    if request.strength is not None:
        _range("strength", request.strength, *sampling.STRENGTH_RANGE)
    _range("near_duplicate_similarity", request.near_duplicate_similarity, -1.0, 1.0)
    if request.neighbor_id is not None and request.neighbor_rank is not None:
        raise InvalidInput("neighbor_rank", "give neighbor_id or neighbor_rank, not both")
    model, vectors = await search.latents_of(session, caller, [source_id], "generation_id")
    _usable(model)
    if request.neighbor_id is not None:
        if request.neighbor_id == source_id:
            raise InvalidInput("neighbor_id", "the neighbour must be another generation than the source")
        # the neighbour needs a latent in the source's space
        await search.latents_of(session, caller, [request.neighbor_id], "neighbor_id", model, "neighbor_id")
        neighbor_id, rank = request.neighbor_id, None
    else:
        rank = 1 if request.neighbor_rank is None else request.neighbor_rank
        neighbor_id = await nth_neighbour(session, caller, model, vectors[0], source_id, rank, request)
    await ensure_queue_room(session, 1, queue_limit)
    strength = sampling.of_model(model.metadata_).strength if request.strength is None else request.strength
    # a transfer runs no sampler: it records its effective strength, and steps 0 whatever the request said
    params = {"strength": strength, "steps": sampling.TRANSFER_STEPS, "neighbor_rank": rank}
    tags = await tags_of(session, [source_id, neighbor_id])
    row = Generation(
        owner=caller.owner,
        model_id=model.id,
        kind="style_transfer",
        status="pending",
        seed=_seed(request.seed, 1),
        params=params,
        parent_id=source_id,
        neighbor_id=neighbor_id,
        visibility=request.visibility,
        tags=with_instruments_of(tags[source_id], tags[neighbor_id]),
    )
    session.add(row)
    await session.commit()
    await enqueue(session, jobs, [row.id])
    return row


async def nth_neighbour(
    session: AsyncSession, caller: Caller, model: Model, vector, source_id: uuid.UUID, rank: int, request: StyleTransfer
) -> uuid.UUID:
    """The ``rank``-th nearest visible neighbour, near-duplicates of the source skipped."""
    if not 1 <= rank <= search.MAX_LIMIT:
        raise InvalidInput("neighbor_rank", f"neighbor_rank must be in [1, {search.MAX_LIMIT}]; got {rank}")
    await search.check_filter(session, model, request.filter)
    target = search.Target(model, vector, exclude=(source_id,))
    pool = await search.nearest(session, caller, target, request.filter, min(2 * rank + 20, search.MAX_EF_SEARCH))
    distinct = [hit for hit in pool if hit.score < request.near_duplicate_similarity]
    if len(distinct) < rank:
        raise InvalidInput(
            "neighbor_rank",
            f"only {len(distinct)} visible neighbours (near-duplicates skipped) "
            f"match; neighbor_rank={rank} is out of reach",
        )
    return distinct[rank - 1].generation_id


async def request_variants(
    session: AsyncSession,
    jobs: JobQueue,
    caller: Caller,
    request: VariantsRequest,
    max_total: int,
    chunk_size: int,
    queue_limit: int,
) -> BatchView:
    given = sum(source is not None for source in (request.ids, request.search, request.cluster_id))
    if given != 1:
        raise InvalidInput("sources", f"give exactly one of ids, search or cluster_id; {given} were given")
    if not 1 <= request.n_per_source <= MAX_PER_SOURCE:
        raise InvalidInput("n_per_source", f"n_per_source must be in [1, {MAX_PER_SOURCE}]; got {request.n_per_source}")
    _range("variance", request.variance, 0.0, 1.0)
    sources = await _sources(session, caller, request)
    total = len(sources) * request.n_per_source
    if total > max_total:
        hint = "; pass cluster_limit to take the cluster's most central members" if request.cluster_id else ""
        cap = f"a batch holds at most {max_total} (SOUNDALIKE_JOBS_MAX_VARIANTS_PER_BATCH){hint}"
        raise InvalidInput("n_per_source", f"{len(sources)} sources x {request.n_per_source} = {total} variants; {cap}")
    await ensure_queue_room(session, total, queue_limit, "n_per_source")
    models = await _spaces(session, caller, sources)
    for model in {model.id: model for model in models.values()}.values():
        _usable(model)
    seed = _seed(request.seed, total)
    params = {
        "n_per_source": request.n_per_source,
        "variance": request.variance,
        "steps": request.steps,
        "seed": seed,
        "sources": [str(s) for s in sources],
        "cluster_id": request.cluster_id,
    }
    batch = Batch(owner=caller.owner, kind="variant", params=params, total=total)
    source_tags = await tags_of(session, sources)
    session.add(batch)
    await session.flush()
    rows = [
        Generation(
            owner=caller.owner,
            model_id=models[source].id,
            kind="variant",
            status="pending",
            seed=seed + s * request.n_per_source + k,
            parent_id=source,
            batch_id=batch.id,
            params={
                "variance": request.variance,
                "steps": _steps(request.steps, models[source]),
                "guidance_scale": sampling.VARIANT_GUIDANCE,
                "variant_index": k,
            },
            visibility=request.visibility,
            tags=source_tags[source],
        )
        for s, source in enumerate(sources)
        for k in range(request.n_per_source)
    ]
    session.add_all(rows)
    await session.commit()
    for start in range(0, len(rows), chunk_size):
        await enqueue(session, jobs, [row.id for row in rows[start : start + chunk_size]])
    return await get_batch(session, caller, batch.id)


async def _sources(session: AsyncSession, caller: Caller, request: VariantsRequest) -> list[uuid.UUID]:
    if request.ids is not None:
        if not request.ids:
            raise InvalidInput("ids", "ids is empty; give at least one source generation")
        sources = list(dict.fromkeys(request.ids))
        await _spaces(session, caller, sources)
        return sources
    if request.search is not None:
        found = await search.search(session, caller, request.search)
        if not found.hits:
            raise InvalidInput("search", "the search found no source generations")
        return [hit.generation_id for hit in found.hits]
    if request.cluster_limit is not None and request.cluster_limit < 1:
        raise InvalidInput("cluster_limit", f"cluster_limit must be at least 1; got {request.cluster_limit}")
    members = await clusters.central_members(session, caller, request.cluster_id, request.cluster_limit)
    if not members:
        raise InvalidInput("cluster_id", f"cluster {request.cluster_id} has no member you may see")
    return members


async def _spaces(session: AsyncSession, caller: Caller, ids: list[uuid.UUID]) -> dict[uuid.UUID, Model]:
    """Every source visible and with a latent; each variant is made in its source's space (the default model's
    when the source has a latent there, see ``search.latents_of``)."""
    return {
        generation_id: (await search.latents_of(session, caller, [generation_id], "ids"))[0] for generation_id in ids
    }


async def tags_of(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """The stored (canonical) tags of these generations: derived work inherits them."""
    rows = await session.execute(select(Generation.id, Generation.tags).where(Generation.id.in_(ids)))
    return {generation_id: list(tags) for generation_id, tags in rows}


def _usable(model: Model) -> None:
    if model.status == "ARCHIVED":
        raise Conflict(f"model {model.alias!r} is archived: it keeps its data but makes nothing new")


def _range(field: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InvalidInput(field, f"{field} must be in [{low:g}, {high:g}]; got {value}")


def _steps(steps: int | None, model: Model) -> int:
    return sampling.of_model(model.metadata_).steps if steps is None else steps


def _seed(seed: int | None, count: int) -> int:
    seed = secrets.randbelow(MAX_SEED - count) if seed is None else seed
    if seed + count - 1 > MAX_SEED:
        raise InvalidInput("seed", f"seed + {count} - 1 must be <= {MAX_SEED}; got seed={seed}")
    return seed


async def get_batch(session: AsyncSession, caller: Caller, batch_id: uuid.UUID) -> BatchView:
    query = select(Batch).where(Batch.id == batch_id)
    if not caller.is_admin:
        query = query.where(Batch.owner == caller.owner)
    batch = await session.scalar(query)
    if batch is None:
        raise NotFound(f"no batch {batch_id}")
    if batch.kind == reencode.KIND:  # progress from its items; their ids are not listed (a whole catalogue)
        return BatchView(batch=batch, counts=await reencode.item_counts(session, batch_id), generation_ids=[])
    counts = dict.fromkeys(("pending", "running", "succeeded", "failed", "cancelled"), 0)
    counts.update(
        dict(
            (
                await session.execute(
                    select(Generation.status, func.count())
                    .where(Generation.batch_id == batch_id)
                    .group_by(Generation.status)
                )
            ).all()
        )
    )
    ids = list(
        await session.scalars(select(Generation.id).where(Generation.batch_id == batch_id).order_by(Generation.seed))
    )
    return BatchView(batch=batch, counts=counts, generation_ids=ids)


async def cancel_batch(session: AsyncSession, jobs: JobQueue, caller: Caller, batch_id: uuid.UUID) -> BatchView:
    view = await get_batch(session, caller, batch_id)
    if view.status in ("succeeded", "failed", "partial", "cancelled"):
        raise Conflict(f"batch {batch_id} is already {view.status}; only pending or running batches cancel")
    if view.batch.kind == reencode.KIND:
        await reencode.cancel_items(session, view.batch)
        return await get_batch(session, caller, batch_id)
    now = datetime.now(UTC)
    view.batch.cancelled_at = now
    job_ids = set(
        await session.scalars(
            update(Generation)
            .where(Generation.batch_id == batch_id, Generation.status.in_(("pending", "running")), owned_by(caller))
            .values(status="cancelled", finished_at=now)
            .returning(Generation.job_id)
        )
    )
    await session.commit()
    for job_id in job_ids:
        await cancel_job_if_done(session, jobs, job_id)
    return await get_batch(session, caller, batch_id)

""" "Sounds like this": nearest visible latents of one model, with filters, examples, MMR and cursors.

Every query lives in one model's latent space: a generation id fixes it, otherwise the ``model`` alias (or the
default model). The scan is pgvector's HNSW index with iterative scans (``hnsw.iterative_scan = strict_order``)
so a selective filter still yields ``limit`` rows; ``hnsw.ef_search`` grows with the number of rows wanted.
Only rows the caller may see are ever read: the visibility rule is part of the SQL, never a post-filter.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.db.schema.models import ArchivedLatent, Generation, LatentEmbedding, Model, half_precision
from service.domain.access.api_keys import Caller
from service.domain.access.visibility import visible_to
from service.domain.catalogue.segments import Analysed, InDomain
from service.domain.discovery import clusters, search_cursors
from service.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.domain.generation.generations import audio_exists
from service.domain.models import registry
from service.domain.models.default_cache import DefaultModelCache
from service.domain.models.model_archive import ensure_searchable
from service.domain.models.model_lookup import resolve_model
from service.ml.tags import normalise_tags  # the tag vocabulary; no model weights are loaded

MAX_LIMIT = 100
FLOAT32_MAX = float(np.finfo(np.float32).max)
MIN_EF_SEARCH, MAX_EF_SEARCH = 200, 1000  # recall@10 0.92 at 40, 0.95-0.98 at 100, 0.98 at 200 (100k latents)
# A filter leaving fewer candidate rows than this is answered by an exact scan of those rows (cheap, recall 1)
# rather than by walking the HNSW graph past 99% non-matching neighbours (Qdrant's full-scan threshold idea).
EXACT_BELOW_ROWS = 5000
MAX_SCAN_TUPLES = 50_000  # how far an iterative scan may walk before giving up on a very selective filter
MMR_POOL_FACTOR, MMR_POOL_MAX = 5, 500  # MMR re-ranks this many nearest candidates
BEST_SCORE_POOL = 200  # per positive example
STRATEGIES = ("average_vector", "best_score")
SEGMENT_GROUPINGS = ("item", "none")  # segments: windows grouped per item (the default), or a flat list of windows
GROUP_BY = ("cluster", *SEGMENT_GROUPINGS)
AUDIO_QUERIES = ("pooled", "windows")  # an uploaded query searched whole (pooled) or window by window
MAX_GROUP_SIZE = 10
GROUP_POOL_FACTOR, GROUP_POOL_MAX = 4, 1000  # nearest candidates spread over groups
# set_config(..., true) is SET LOCAL: the values end with the transaction. Only the HNSW path needs them (a
# selective filter is answered by ``filtered_statement`` alone). ``nearest`` sends them in the same pipeline as the
# search statement, with custom plans forced: a prepared statement is planned for its values every time, as an
# unprepared one is, so the plan never changes.
# ``hnsw.ef_search`` is never set below the session's own value, so an operator raises it for a large catalogue
# with plain PostgreSQL (``ALTER DATABASE soundalike SET hnsw.ef_search = 400``; docs/performance.md).
SCAN_SETTINGS = text(
    "SELECT set_config('hnsw.iterative_scan', 'strict_order', true), "
    "set_config('hnsw.ef_search', CAST(greatest(CAST(:ef_search AS int), "
    "coalesce(CAST(nullif(current_setting('hnsw.ef_search', true), '') AS int), 0)) AS text), true), "
    "set_config('hnsw.max_scan_tuples', :max_scan_tuples, true)"
)
PIPELINE_SETTINGS = re.sub(r":(\w+)", r"%(\1)s", str(SCAN_SETTINGS)) + (
    ", set_config('plan_cache_mode', 'force_custom_plan', true)"
)


@dataclass(frozen=True)
class NumericRange:
    gte: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class SearchFilter:
    tags_all: list[str] = field(default_factory=list)
    tags_any: list[str] = field(default_factory=list)
    tempo: NumericRange | None = None  # from tags like "90 bpm"
    params: dict[str, NumericRange] = field(default_factory=dict)  # numeric generation params, e.g. steps
    kind: str | None = None
    mine: bool = False
    visibility: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    exclude_ids: list[uuid.UUID] = field(default_factory=list)
    cluster_id: int | None = None  # a cluster of any clustering run of the searched model
    in_domain_only: bool = False  # leave out imports the model flagged as not music (in_domain_ok false)


@dataclass(frozen=True)
class SearchQuery:
    """Exactly one of ``generation_id``, ``vector``, ``audio_latent_of`` (set by the caller after encoding)
    or ``positive`` (with optional ``negative``)."""

    generation_id: uuid.UUID | None = None
    vector: list[float] | None = None
    positive: list[uuid.UUID] = field(default_factory=list)
    negative: list[uuid.UUID] = field(default_factory=list)
    strategy: str = "average_vector"
    model: str | None = None
    filter: SearchFilter = field(default_factory=SearchFilter)
    limit: int = 10
    cursor: str | None = None
    score_threshold: float | None = None
    diversity: float | None = None
    exact: bool = False
    group_by: str | None = None
    group_size: int = 3
    segments: bool = False  # hits are windows (item, start, end) of long files (discovery.segment_search)
    audio_query: str = "pooled"


@dataclass(frozen=True)
class SegmentMatch:
    """A window of an item (seconds) that matched; with a window-by-window audio query, the query's window too."""

    segment_id: int
    start: float
    end: float
    distance: float
    query_start: float | None = None
    query_end: float | None = None

    @property
    def score(self) -> float:
        return 1.0 - self.distance


@dataclass(frozen=True)
class Hit:
    generation_id: uuid.UUID
    latent_id: int
    distance: float | None  # cosine distance to the query vector (None for best_score, which has none)
    score: float  # cosine similarity, or the best_score objective
    tags: list[str]
    kind: str
    owner: str
    visibility: str
    created_at: datetime
    has_audio: bool
    segments: list[SegmentMatch] | None = None  # with segments: the item's matching windows, nearest first
    query_start: float | None = None  # a window-by-window audio query: the query window that matched best
    query_end: float | None = None
    rank: float | None = None  # what the scan ordered by: the half-precision distance on the HNSW path (``distance``
    # otherwise); cursors page on it so the pages partition the scan's order


@dataclass(frozen=True)
class HitGroup:
    """The nearest hits of one cluster of the active run; ``cluster_id`` None holds items newer than the run."""

    cluster_id: int | None
    label: int | None
    hits: list[Hit]


@dataclass(frozen=True)
class SearchResult:
    model: Model
    hits: list[Hit]
    next_cursor: str | None
    groups: list[HitGroup] | None = None  # with group_by; ``hits`` then lists the groups' hits in order
    in_domain: InDomain | None = None  # an audio query: the model's verdict on it ("nothing similar" signal)


@dataclass(frozen=True)
class Target:
    """What a search walks towards: one query vector (or several examples) in one model's space."""

    model: Model
    vector: np.ndarray | None  # None only for best_score
    positives: np.ndarray | None = None
    negatives: np.ndarray | None = None
    exclude: tuple[uuid.UUID, ...] = ()


def count_query_kinds(query: SearchQuery, has_audio: bool) -> int:
    return sum([query.generation_id is not None, query.vector is not None, bool(query.positive), has_audio])


def check_query(query: SearchQuery, caller: Caller, has_audio: bool = False) -> None:
    """Shape checks that need no database: one query kind, ranges, example sets."""
    if query.negative and not query.positive:
        raise InvalidInput("positive", "negative examples need at least one positive example")
    kinds = count_query_kinds(query, has_audio)
    if kinds != 1:
        detail = "none was given" if kinds == 0 else f"{kinds} were given"
        raise InvalidInput("query", f"give exactly one of generation_id, vector, audio or positive; {detail}")
    if set(query.positive) & set(query.negative):
        overlap = ", ".join(sorted(str(i) for i in set(query.positive) & set(query.negative)))
        raise InvalidInput("negative", f"ids appear in both positive and negative: {overlap}")
    if query.strategy not in STRATEGIES:
        raise InvalidInput("strategy", f"strategy must be one of {', '.join(STRATEGIES)}; got {query.strategy!r}")
    if not 1 <= query.limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"limit must be in [1, {MAX_LIMIT}]; got {query.limit}")
    if query.diversity is not None and not 0.0 <= query.diversity <= 1.0:
        raise InvalidInput("diversity", f"diversity must be in [0, 1]; got {query.diversity}")
    if query.score_threshold is not None and not -1.0 <= query.score_threshold <= 1.0:
        raise InvalidInput("score_threshold", f"score_threshold must be in [-1, 1]; got {query.score_threshold}")
    if query.cursor is not None and (query.diversity is not None or query.strategy == "best_score"):
        raise InvalidInput("cursor", "cursor pages only plain nearest-neighbour results (no diversity, no best_score)")
    if query.exact and not caller.is_admin:
        raise Forbidden("exact=true is an evaluation scan reserved for admin keys")
    if query.group_by is not None:
        check_grouping(query)
    check_segments(query, has_audio)


def check_segments(query: SearchQuery, has_audio: bool) -> None:
    """Segment search and window-by-window audio queries walk plain nearest neighbours only."""
    plain = query.cursor is None and query.diversity is None and query.strategy != "best_score"
    if query.segments and not plain:
        raise InvalidInput("segments", "segments=true cannot be combined with cursor, diversity or best_score")
    if query.segments and not 1 <= query.group_size <= MAX_GROUP_SIZE:
        raise InvalidInput("group_size", f"group_size must be in [1, {MAX_GROUP_SIZE}]; got {query.group_size}")
    if query.audio_query not in AUDIO_QUERIES:
        allowed = ", ".join(AUDIO_QUERIES)
        raise InvalidInput("audio_query", f"audio_query must be one of {allowed}; got {query.audio_query!r}")
    if query.audio_query == "windows" and not has_audio:
        raise InvalidInput("audio_query", "audio_query=windows searches an uploaded file window by window; upload one")
    if query.audio_query == "windows" and not (plain and query.group_by in (None, *SEGMENT_GROUPINGS)):
        raise InvalidInput("audio_query", "audio_query=windows cannot be combined with cursor, diversity or group_by")


def check_grouping(query: SearchQuery) -> None:
    if query.group_by not in GROUP_BY:
        raise InvalidInput("group_by", f"group_by must be one of {', '.join(GROUP_BY)}; got {query.group_by!r}")
    if query.group_by in SEGMENT_GROUPINGS and not query.segments:
        raise InvalidInput("group_by", f"group_by={query.group_by} groups segment hits; it needs segments=true")
    if query.group_by == "cluster" and query.segments:
        raise InvalidInput(
            "group_by", "segment hits are grouped by item (default) or not at all (none), not by cluster"
        )
    if not 1 <= query.group_size <= MAX_GROUP_SIZE:
        raise InvalidInput("group_size", f"group_size must be in [1, {MAX_GROUP_SIZE}]; got {query.group_size}")
    if query.cursor is not None or query.diversity is not None or query.strategy == "best_score":
        raise InvalidInput("group_by", "group_by=cluster cannot be combined with cursor, diversity or best_score")


def check_vector(values: Any, dim: int, field_name: str = "vector") -> np.ndarray:
    """The query vector scaled to unit length (cosine ignores the length, and float32 sums over huge or tiny
    values would overflow or vanish in the database); refused unless it is ``dim`` finite float32 numbers."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) != dim:
        raise InvalidInput(field_name, f"{field_name} must have {dim} numbers; got {array.size}")
    if not np.isfinite(array).all():
        raise InvalidInput(field_name, f"{field_name} contains NaN or infinite values")
    if (too_large := np.abs(array) > FLOAT32_MAX).any():
        index = int(np.argmax(too_large))
        bound = f"the float32 range latents are stored in (|x| <= {FLOAT32_MAX:.4g})"
        raise InvalidInput(field_name, f"{field_name}[{index}] = {array[index]:g} is outside {bound}")
    norm = float(np.linalg.norm(array))
    if norm == 0.0:
        raise InvalidInput(field_name, f"{field_name} has zero norm; cosine similarity is undefined for it")
    return (array / norm).astype(np.float32)


async def search(
    session: AsyncSession,
    caller: Caller,
    query: SearchQuery,
    audio: Analysed | None = None,
    defaults: DefaultModelCache | None = None,
) -> SearchResult:
    """``audio``: an uploaded query, analysed by the searched model (its pooled latent, windows and verdict);
    ``defaults``: the serving process's cached default model, for a query that names none."""
    check_query(query, caller, has_audio=audio is not None)
    latent = None if audio is None else audio.latent
    target = await resolve_target(session, caller, query, latent, defaults)
    await check_filter(session, target.model, query.filter)
    if query.segments or query.audio_query == "windows":
        from service.domain.discovery import segment_search  # it builds on this module

        hits = await segment_search.search(session, caller, target, query, audio)
        return SearchResult(target.model, hits, None, in_domain=None if audio is None else audio.in_domain)
    result = await _search_items(session, caller, target, query)
    return result if audio is None else replace(result, in_domain=audio.in_domain)


async def _search_items(session: AsyncSession, caller: Caller, target: Target, query: SearchQuery) -> SearchResult:
    if query.group_by == "cluster":
        return await _grouped_by_cluster(session, caller, target, query)
    if query.strategy == "best_score" and query.positive:
        hits = await _best_score(session, caller, target, query)
        return SearchResult(target.model, hits, None)
    wanted = query.limit
    if query.diversity is not None:
        wanted = min(max(query.limit * MMR_POOL_FACTOR, 50), MMR_POOL_MAX)
    bound_to = search_cursors.fingerprint(
        target.model.id, target.vector, target.exclude, query.filter, query.score_threshold, query.exact
    )
    after = search_cursors.decode(query.cursor, bound_to) if query.cursor else None
    hits = await nearest(session, caller, target, query.filter, wanted, exact=query.exact, after=after)
    hits = _above_threshold(hits, query.score_threshold)
    if query.diversity is not None:
        hits = await _mmr(session, target, hits, query.limit, 1.0 - query.diversity)
        return SearchResult(target.model, hits, None)
    last = max(hits, key=lambda hit: (hit.rank, hit.latent_id)) if len(hits) == query.limit else None
    next_cursor = search_cursors.encode(last.rank, last.latent_id, bound_to) if last else None
    return SearchResult(target.model, hits, next_cursor)


async def check_filter(session: AsyncSession, model: Model, filters: SearchFilter) -> None:
    """Filter values that need the database: a cluster id must name a cluster of the searched model."""
    if filters.cluster_id is not None:
        await clusters.check_cluster_of(session, model, filters.cluster_id, "filter.cluster_id")


async def _grouped_by_cluster(
    session: AsyncSession, caller: Caller, target: Target, query: SearchQuery
) -> SearchResult:
    """Up to ``limit`` clusters of the active run, ordered by their nearest hit, each with its ``group_size``
    nearest hits (Qdrant's search groups). The candidate pool of nearest hits doubles until the groups are
    full or it holds ``GROUP_POOL_MAX`` hits (then far clusters may be missing: best effort, like Qdrant)."""
    run_id = await clusters.active_run_id(session, target.model)
    pool_size = query.limit * query.group_size * GROUP_POOL_FACTOR
    while True:
        pool_size = min(pool_size, GROUP_POOL_MAX)
        pool = await nearest(session, caller, target, query.filter, pool_size, exact=query.exact)
        labels = await clusters.labels_of(session, run_id, [hit.latent_id for hit in pool])
        groups = _group(_above_threshold(pool, query.score_threshold), labels, query.limit, query.group_size)
        full = len(groups) == query.limit and all(len(g.hits) == query.group_size for g in groups)
        if full or len(pool) < pool_size or pool_size == GROUP_POOL_MAX:
            return SearchResult(target.model, [hit for group in groups for hit in group.hits], None, groups)
        pool_size *= 2


def _group(hits: list[Hit], labels: dict[int, tuple[int, int]], limit: int, size: int) -> list[HitGroup]:
    groups: dict[int | None, HitGroup] = {}
    for hit in hits:
        cluster_id, label = labels.get(hit.latent_id, (None, None))
        group = groups.get(cluster_id)
        if group is None:
            if len(groups) == limit:
                continue
            group = groups[cluster_id] = HitGroup(cluster_id, label, [])
        if len(group.hits) < size:
            group.hits.append(hit)
    return list(groups.values())


async def resolve_target(
    session: AsyncSession,
    caller: Caller,
    query: SearchQuery,
    audio_latent: np.ndarray | None,
    defaults: DefaultModelCache | None = None,
) -> Target:
    """The model and query vector(s); ids must be visible (404 otherwise) and have latents in one model's space
    (the ``model`` asked for, else the one ``latents_of`` picks)."""
    named = ensure_searchable(await resolve_model(session, query.model)) if query.model else None
    if query.generation_id is not None:
        model, vectors = await latents_of(session, caller, [query.generation_id], "generation_id", named)
        return Target(model, vectors[0], exclude=(query.generation_id,))
    if query.positive:
        model, pos = await latents_of(session, caller, query.positive, "positive", named)
        neg = None
        if query.negative:
            _, neg = await latents_of(session, caller, query.negative, "negative", model, space_field="negative")
        exclude = (*query.positive, *query.negative)
        if query.strategy == "best_score":
            return Target(model, None, positives=pos, negatives=neg, exclude=exclude)
        average = unit_rows(pos).mean(axis=0)
        vector = average if neg is None else 2 * average - unit_rows(neg).mean(axis=0)
        return Target(model, check_vector(vector, model.latent_dim, "positive"), exclude=exclude)
    model = named or (await defaults.get(session) if defaults else await resolve_model(session, None))
    if audio_latent is not None:
        return Target(model, check_vector(audio_latent, model.latent_dim, "audio"))
    return Target(model, check_vector(query.vector, model.latent_dim, "vector"))


async def latents_of(
    session: AsyncSession,
    caller: Caller,
    ids: list[uuid.UUID],
    field_name: str,
    model: Model | None = None,
    space_field: str = "model",
) -> tuple[Model, np.ndarray]:
    """The latents of visible generations (live or archived), in the order given, all in one model's space.

    An item may hold latents in several spaces (after a re-encode). The space is ``model``'s when given (items
    without a latent there are an error on ``space_field``), else the default model's when every item has a
    latent there, else that of the model that produced them."""
    if len(set(ids)) != len(ids):
        raise InvalidInput(field_name, f"{field_name} lists an id twice")
    spaces: dict[uuid.UUID, dict[int, Any]] = {}
    producers: dict[uuid.UUID, int] = {}
    for table in (LatentEmbedding, ArchivedLatent):
        found = await session.execute(
            select(Generation.id, Generation.model_id, table.model_id, table.embedding)
            .join(table, table.generation_id == Generation.id)
            .where(Generation.id.in_(ids), visible_to(caller))
        )
        for gid, producer, space, embedding in found:
            spaces.setdefault(gid, {})[space] = embedding
            producers[gid] = producer
    await _refuse_missing(session, caller, [i for i in ids if i not in spaces], field_name)
    space = await _common_space(session, ids, spaces, producers, model, field_name, space_field)
    return space, np.stack([np.asarray(spaces[i][space.id], dtype=np.float32) for i in ids])


async def _refuse_missing(session: AsyncSession, caller: Caller, missing: list[uuid.UUID], field_name: str) -> None:
    if not missing:
        return
    visible = set(await session.scalars(select(Generation.id).where(Generation.id.in_(missing), visible_to(caller))))
    for generation_id in missing:
        if generation_id in visible:
            raise Conflict(f"generation {generation_id} ({field_name}) has no latent yet; wait until it succeeds")
        raise NotFound(f"no generation {generation_id} ({field_name})")


async def _common_space(
    session: AsyncSession,
    ids: list[uuid.UUID],
    spaces: dict[uuid.UUID, dict[int, Any]],
    producers: dict[uuid.UUID, int],
    model: Model | None,
    field_name: str,
    space_field: str,
) -> Model:
    common = set.intersection(*(set(spaces[i]) for i in ids))
    if model is not None:
        if model.id not in common:
            lacking = next(i for i in ids if model.id not in spaces[i])
            message = (
                f"generation {lacking} ({field_name}) has no latent in model {model.alias!r}'s space; latents of two "
                f"models never mix (re-encode the catalogue into {model.alias!r} to search it there)"
            )
            raise InvalidInput(space_field, message)
        return model
    if not common:
        count = len({producers[i] for i in ids})
        raise InvalidInput(field_name, f"{field_name} mixes generations of {count} models; use one model")
    default = await registry.default_model(session)
    preferred = [default.id] if default is not None else []
    preferred += sorted({producers[i] for i in ids}) + sorted(common)
    return await session.get(Model, next(space for space in preferred if space in common))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def filter_clauses(caller: Caller, filters: SearchFilter) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = [visible_to(caller), Generation.archived_at.is_(None)]
    if filters.tags_all:
        clauses.append(Generation.tags.contains(normalise_tags(filters.tags_all)))
    if filters.tags_any:
        clauses.append(Generation.tags.overlap(normalise_tags(filters.tags_any)))
    if filters.kind:
        clauses.append(Generation.kind == filters.kind)
    if filters.mine:
        clauses.append(Generation.owner == caller.owner)
    if filters.visibility:
        clauses.append(Generation.visibility == filters.visibility)
    if filters.created_after:
        clauses.append(Generation.created_at >= filters.created_after)
    if filters.created_before:
        clauses.append(Generation.created_at < filters.created_before)
    if filters.exclude_ids:
        clauses.append(Generation.id.not_in(filters.exclude_ids))
    if filters.cluster_id is not None:
        clauses.append(clusters.in_cluster(filters.cluster_id))
    if filters.in_domain_only:
        clauses.append(Generation.in_domain_ok.is_not(False))
    for name, bounds in filters.params.items():
        value = case(
            (func.jsonb_typeof(Generation.params[name]) == "number", cast(Generation.params[name].astext, Float))
        )
        clauses.extend(_in_range(value, bounds))
    if filters.tempo is not None:
        clauses.append(_tempo_in(filters.tempo))
    return clauses


def _in_range(value, bounds: NumericRange) -> list[ColumnElement[bool]]:
    out = []
    if bounds.gte is not None:
        out.append(value >= bounds.gte)
    if bounds.lte is not None:
        out.append(value <= bounds.lte)
    return out


def _tempo_in(bounds: NumericRange) -> ColumnElement[bool]:
    """Tempo tags read "<n> bpm"; an item matches when one of its tempo tags lies in the range."""
    tag = func.unnest(Generation.tags).table_valued("tag").render_derived()
    bpm = cast(func.split_part(tag.c.tag, " ", 1), Float)
    inner = select(literal(1)).select_from(tag).where(tag.c.tag.op("~")(r"^[0-9]+(\.[0-9]+)? bpm$"))
    guarded = case((tag.c.tag.op("~")(r"^[0-9]+(\.[0-9]+)? bpm$"), bpm))
    for clause in _in_range(guarded, bounds):
        inner = inner.where(clause)
    return inner.exists()


async def nearest(
    session: AsyncSession,
    caller: Caller,
    target: Target,
    filters: SearchFilter,
    limit: int,
    exact: bool = False,
    after: tuple[float, int] | None = None,
) -> list[Hit]:
    """The ``limit`` visible items nearest to ``target.vector`` (cosine), filtered, excluding the sources."""
    if not exact and filters != SearchFilter():
        rows = await _rows(session, _shaped(filtered_statement, caller, target, filters, limit, after), target, limit)
        if rows[0][0] < EXACT_BELOW_ROWS:  # selective: these are the exact nearest candidates
            return [_hit(row[1:]) for row in rows if row[1] is not None]
    shape = _shaped(nearest_statement, caller, target, filters, limit, exact, after)
    return by_distance([_hit(row) for row in await _rows(session, shape, target, limit)])


def by_distance(hits: list[Hit]) -> list[Hit]:
    """The page the HNSW scan found (in half-precision order) in full-precision order: the two can differ among
    near ties, and clients see full-precision scores."""
    return sorted(hits, key=lambda hit: (hit.distance, hit.latent_id))


QUERY_VECTOR = bindparam("query_vector", type_=LatentEmbedding.embedding.type)
SHAPES_KEPT = 512
PSYCOPG = postgresql.psycopg.dialect()


@dataclass(frozen=True)
class Shape:
    """A search statement as psycopg SQL text and its bind values, all but the query vector's."""

    sql: str
    params: dict[str, Any]


_shapes: dict[str, Shape] = {}


def _shaped(build, caller: Caller, target: Target, filters: SearchFilter, *args) -> Shape:
    """``build``'s statement with the query vector as the bind parameter ``QUERY_VECTOR``, built and compiled once
    per shape (caller, model, filters, exclusions, the other arguments and the exact-scan threshold) and kept (the
    last ``SHAPES_KEPT``): building a SQLAlchemy expression costs about as much as running a selective search."""
    key = repr((build.__name__, caller, target.model.id, filters, target.exclude, args, EXACT_BELOW_ROWS))
    shape = _shapes.pop(key, None)
    if shape is None:
        shape = _compiled(build(caller, replace(target, vector=QUERY_VECTOR), filters, *args))
    _shapes[key] = shape  # most recently used last
    if len(_shapes) > SHAPES_KEPT:
        del _shapes[next(iter(_shapes))]
    return shape


def _compiled(statement: Select) -> Shape:
    state = statement.compile(dialect=PSYCOPG).construct_expanded_state({QUERY_VECTOR.key: None})
    processors = state.processors
    params = {
        name: processors[name](value) if name in processors else value
        for name, value in state.parameters.items()
        if name != QUERY_VECTOR.key
    }
    return Shape(state.statement, params)


async def _rows(session: AsyncSession, shape: Shape, target: Target, limit: int) -> list[tuple]:
    """One round trip: the settings (``scan_settings``; the filtered statement ignores them) and the search
    statement in one psycopg pipeline, the query vector sent in binary (pgvector's dumper, registered on every
    connection), plain rows back (no ORM).

    A session that has not touched the database yet (a search by vector with the default model cached) lends its
    engine: a connection of the pool runs the statement prepared and commits in the same pipeline, so the pool's
    rollback on return costs nothing and the connection keeps its prepared statement (psycopg deallocates them
    all at a rollback). A session already in a transaction (it may hold uncommitted work) runs it in that
    transaction, unprepared, and commits nothing."""
    params = {**shape.params, QUERY_VECTOR.key: np.asarray(target.vector, dtype=np.float32)}
    settings = scan_settings(limit)
    if session.in_transaction() or session.bind is None:
        return await _pipelined(await session.connection(), shape, params, settings, own=False)
    async with session.bind.connect() as connection:
        return await _pipelined(connection, shape, params, settings, own=True)


async def _pipelined(
    connection: AsyncConnection, shape: Shape, params: dict[str, Any], settings: dict[str, str], own: bool
) -> list[tuple]:
    driver = (await connection.get_raw_connection()).driver_connection
    async with driver.pipeline():
        await driver.execute(PIPELINE_SETTINGS, settings)
        cursor = await driver.execute(shape.sql, params, prepare=own)
        if own:
            await driver.commit()
    return await cursor.fetchall()


def _hit(row) -> Hit:
    """A row of ``nearest_statement`` (which ends with the rank) or of ``filtered_statement`` (ranked by distance)."""
    gid, lid, d, tags, kind, owner, vis, created, audio, *rank = row
    return Hit(
        generation_id=gid,
        latent_id=lid,
        distance=float(d),
        score=1.0 - float(d),
        tags=list(tags),
        kind=kind,
        owner=owner,
        visibility=vis,
        created_at=created,
        has_audio=audio,
        rank=float(rank[0] if rank else d),
    )


# the columns every hit carries after its ids and distance (``_hit`` reads them in this order), then has_audio
HIT_COLUMNS = (Generation.tags, Generation.kind, Generation.owner, Generation.visibility, Generation.created_at)


def _scope(caller: Caller, target: Target, filters: SearchFilter) -> list[ColumnElement[bool]]:
    clauses = [LatentEmbedding.model_id == target.model.id, *filter_clauses(caller, filters)]
    if target.exclude:
        clauses.append(LatentEmbedding.generation_id.not_in(target.exclude))
    return clauses


def _after(distance, latent_id, after: tuple[float, int] | None) -> list[ColumnElement[bool]]:
    if after is None:
        return []
    last_distance, last_id = after
    return [or_(distance > last_distance, and_(distance == last_distance, latent_id > last_id))]


def filtered_statement(
    caller: Caller, target: Target, filters: SearchFilter, limit: int, after: tuple[float, int] | None = None
) -> Select:
    """A filtered search in one round trip: the generations the filters leave (visibility included, found through
    their indexes, e.g. the GIN index on tags), at most ``EXACT_BELOW_ROWS``, each with its latent in the model's
    space fetched by the unique (generation, model) index and its distance computed (a MATERIALIZED CTE). Rows:
    ``candidates`` (how many the CTE holds) then the hit's columns. Under ``EXACT_BELOW_ROWS`` candidates the rows
    are the exact ``limit`` nearest (recall 1); at ``EXACT_BELOW_ROWS`` the filter is not selective, the one row
    has no hit (the sort is skipped) and the caller walks the HNSW index instead."""
    distance = LatentEmbedding.embedding.cosine_distance(target.vector)
    latent = (
        select(LatentEmbedding.id.label("latent_id"), distance.label("distance"))
        .where(LatentEmbedding.generation_id == Generation.id, LatentEmbedding.model_id == target.model.id)
        .offset(0)  # keeps the lateral a per-candidate index probe: never flattened into a hash join over all latents
        .lateral("latent")
    )
    clauses = filter_clauses(caller, filters)
    if target.exclude:
        clauses.append(Generation.id.not_in(target.exclude))
    found = (
        select(
            Generation.id.label("generation_id"),
            latent.c.latent_id,
            latent.c.distance,
            *HIT_COLUMNS,
        )
        .select_from(Generation)
        .join(latent, true())
        .where(*clauses)
        .limit(EXACT_BELOW_ROWS)
        .cte("candidates")
        .prefix_with("MATERIALIZED")
    )
    counted = select(func.count().label("candidates")).select_from(found).subquery("counted")
    hits = (
        select(
            found.c.generation_id,
            found.c.latent_id,
            found.c.distance,
            *(found.c[column.key] for column in HIT_COLUMNS),
            audio_exists(found.c.generation_id).label("has_audio"),
        )
        .where(counted.c.candidates < EXACT_BELOW_ROWS, *_after(found.c.distance, found.c.latent_id, after))
        .order_by(found.c.distance, found.c.latent_id)
        .limit(limit)
        .lateral("hits")
    )
    return select(counted.c.candidates, *hits.c).select_from(counted).outerjoin(hits, true())


def nearest_statement(
    caller: Caller,
    target: Target,
    filters: SearchFilter,
    limit: int,
    exact: bool = False,
    after: tuple[float, int] | None = None,
) -> Select:
    """``ORDER BY embedding::halfvec(512) <=> q::halfvec(512) LIMIT n`` (the expression the HNSW index holds, so
    the planner walks it) with every filter in the WHERE; the distance returned is the full-precision one, and
    the last column the half-precision rank the order and a cursor use. ``exact``: an exact scan in full
    precision (the distance is then the rank)."""
    distance = LatentEmbedding.embedding.cosine_distance(target.vector)
    rank = scan_order(distance, LatentEmbedding.embedding, target.vector, exact)
    clauses = [*_scope(caller, target, filters), *_after(rank, LatentEmbedding.id, after)]
    return (
        select(
            LatentEmbedding.generation_id,
            LatentEmbedding.id,
            distance.label("distance"),
            *HIT_COLUMNS,
            audio_exists(Generation.id),
            rank.label("rank"),
        )
        .join(Generation, Generation.id == LatentEmbedding.generation_id)
        .where(*clauses)
        .order_by(rank, LatentEmbedding.id)
        .limit(limit)
    )


def index_distance(embedding, vector) -> ColumnElement[float]:
    """The cosine distance the HNSW indexes order by: both sides in half precision (``half_precision``). "+ 0"
    on a distance hides it from the index (an exact scan)."""
    return half_precision(embedding).cosine_distance(half_precision(vector))


def scan_order(distance, embedding, vector, exact: bool) -> ColumnElement[float]:
    """What a nearest-first statement orders by: the HNSW index's half-precision distance, or (``exact``) the
    full-precision ``distance`` hidden from the index so the rows are scanned."""
    return (distance + 0) if exact else index_distance(embedding, vector)


def scan_settings(limit: int) -> dict[str, str]:
    ef_search = min(max(MIN_EF_SEARCH, 2 * limit), MAX_EF_SEARCH)
    return {"ef_search": str(ef_search), "max_scan_tuples": str(MAX_SCAN_TUPLES)}


async def tune_scan(session: AsyncSession, limit: int) -> None:
    """Per transaction: iterative index scans in exact distance order, a candidate list sized to ``limit``."""
    await session.execute(SCAN_SETTINGS, scan_settings(limit))


def _above_threshold(hits: list[Hit], threshold: float | None) -> list[Hit]:
    return hits if threshold is None else [hit for hit in hits if hit.score >= threshold]


async def embeddings_of(session: AsyncSession, latent_ids: list[int]) -> np.ndarray:
    rows = dict(
        (
            await session.execute(
                select(LatentEmbedding.id, LatentEmbedding.embedding).where(LatentEmbedding.id.in_(latent_ids))
            )
        ).all()
    )
    return np.stack([np.asarray(rows[i], dtype=np.float32) for i in latent_ids])


async def _mmr(session: AsyncSession, target: Target, pool: list[Hit], limit: int, weight: float) -> list[Hit]:
    """Maximal marginal relevance: pick, one at a time, the candidate maximising
    ``weight * sim(query, d) - (1 - weight) * max sim(d, picked)``."""
    if not pool:
        return []
    vectors = unit_rows(await embeddings_of(session, [hit.latent_id for hit in pool]))
    relevance = np.array([hit.score for hit in pool])
    picked: list[int] = []
    redundancy = np.full(len(pool), -np.inf)
    while len(picked) < min(limit, len(pool)):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        objective = weight * relevance - (1.0 - weight) * penalty
        objective[picked] = -np.inf
        best = int(np.argmax(objective))
        picked.append(best)
        redundancy = np.maximum(redundancy, vectors @ vectors[best])
    return [pool[i] for i in picked]


async def _best_score(session: AsyncSession, caller: Caller, target: Target, query: SearchQuery) -> list[Hit]:
    """Qdrant's best_score: candidates near any positive; score = best positive similarity when it beats the
    best negative one, else minus the best negative similarity squared."""
    pool: dict[uuid.UUID, Hit] = {}
    for positive in target.positives:
        around = Target(target.model, positive, exclude=target.exclude)
        for hit in await nearest(session, caller, around, query.filter, BEST_SCORE_POOL, exact=query.exact):
            pool.setdefault(hit.generation_id, hit)
    if not pool:
        return []
    hits = list(pool.values())
    vectors = unit_rows(await embeddings_of(session, [hit.latent_id for hit in hits]))
    best_positive = (vectors @ unit_rows(target.positives).T).max(axis=1)
    scores = best_positive.copy()
    if target.negatives is not None:
        best_negative = (vectors @ unit_rows(target.negatives).T).max(axis=1)
        scores = np.where(best_positive > best_negative, best_positive, -(best_negative**2))
    ranked = sorted(zip(scores, hits, strict=True), key=lambda pair: (-pair[0], pair[1].latent_id))
    out = [_rescored(hit, float(score)) for score, hit in ranked]
    return _above_threshold(out, query.score_threshold)[: query.limit]


def _rescored(hit: Hit, score: float) -> Hit:
    return Hit(**{**hit.__dict__, "score": score, "distance": None})

"""Which part of which track sounds like this: search over the windows of long files (``latent_segments``).

``segments: true`` walks the segments' own HNSW index (cosine, one model's space) with the same filters and
visibility as whole-item search (``service.domain.discovery.search``). Hits are grouped per item by default: up to
``limit`` items ordered by their nearest window, each with its ``group_size`` nearest windows; the candidate
pool of nearest windows doubles until ``limit`` items are found or it holds ``SEGMENT_POOL_MAX`` windows (a
track whose best window lies farther than that is left out). ``group_by: "none"`` lists the nearest windows.

An uploaded query longer than one window can be searched window by window (``audio_query: "windows"``): each
query window is a search of its own (its pool of nearest windows does not grow); a window (or, without segments,
an item) keeps the query window that matched it best.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import Generation, LatentSegment
from service.domain.access.api_keys import Caller
from service.domain.catalogue.segments import Analysed
from service.domain.discovery.search import (
    HIT_COLUMNS,
    Hit,
    SearchFilter,
    SearchQuery,
    SegmentMatch,
    Target,
    check_vector,
    filter_clauses,
    nearest,
    scan_order,
    tune_scan,
)
from service.domain.errors import InvalidInput
from service.domain.generation.generations import audio_exists

SEGMENT_POOL_FACTOR, SEGMENT_POOL_MAX = 4, 5000  # nearest windows spread over items
MAX_QUERY_WINDOWS = 150  # a window-by-window query: 5 minutes at the shipped model's 2 s hop


@dataclass(frozen=True)
class QueryWindow:
    vector: np.ndarray
    start: float | None = None
    end: float | None = None


async def search(
    session: AsyncSession, caller: Caller, target: Target, query: SearchQuery, audio: Analysed | None
) -> list[Hit]:
    windows = query_windows(target, query, audio)
    if not query.segments:
        return await _items_by_window(session, caller, target, query, windows)
    if query.group_by == "none":
        rows = await _pool(session, caller, target, query, windows, query.limit)
        return [_hit(row, [row.match]) for row in rows[: query.limit]]
    return await _grouped(session, caller, target, query, windows)


def query_windows(target: Target, query: SearchQuery, audio: Analysed | None) -> list[QueryWindow]:
    """The query vector, or each window of an uploaded query (``audio_query: "windows"``)."""
    if query.audio_query != "windows" or audio is None:
        return [QueryWindow(target.vector)]
    if len(audio.window_latents) > MAX_QUERY_WINDOWS:
        count = len(audio.window_latents)
        message = f"the upload has {count} windows; a window-by-window search takes at most {MAX_QUERY_WINDOWS}"
        raise InvalidInput("file", f"{message} (search it pooled, or upload an excerpt)")
    dim = target.model.latent_dim
    return [QueryWindow(check_vector(latent, dim, "audio"), start, end) for start, end, _, latent in audio.windows()]


@dataclass(frozen=True)
class WindowRow:
    hit: Hit  # the item (``latent_id`` is the segment's id)
    match: SegmentMatch


async def _grouped(
    session: AsyncSession, caller: Caller, target: Target, query: SearchQuery, windows: list[QueryWindow]
) -> list[Hit]:
    """Per item; the pool grows for one query vector only (a window-by-window query is many pools already)."""
    pool_size = query.limit * query.group_size * SEGMENT_POOL_FACTOR
    while True:
        pool_size = min(pool_size, SEGMENT_POOL_MAX)
        rows = await _pool(session, caller, target, query, windows, pool_size)
        hits = per_item(rows, query.limit, query.group_size)
        exhausted = len(rows) < pool_size or pool_size == SEGMENT_POOL_MAX or len(windows) > 1
        if len(hits) == query.limit or exhausted:
            return hits
        pool_size *= 2


def per_item(rows: list[WindowRow], limit: int, size: int) -> list[Hit]:
    """Up to ``limit`` items in the order of their nearest window, each with its ``size`` nearest windows."""
    groups: dict[uuid.UUID, list[WindowRow]] = {}
    for row in rows:
        group = groups.get(row.hit.generation_id)
        if group is None:
            if len(groups) == limit:
                continue
            group = groups[row.hit.generation_id] = []
        if len(group) < size:
            group.append(row)
    return [_hit(group[0], [row.match for row in group]) for group in groups.values()]


def _hit(best: WindowRow, matches: list[SegmentMatch]) -> Hit:
    return replace(best.hit, segments=matches, query_start=best.match.query_start, query_end=best.match.query_end)


async def _pool(
    session: AsyncSession, caller: Caller, target: Target, query: SearchQuery, windows: list[QueryWindow], size: int
) -> list[WindowRow]:
    """The ``size`` nearest windows to each query window, each window once (with its best query window), nearest
    first, at or above ``score_threshold``."""
    best: dict[int, WindowRow] = {}
    await tune_scan(session, size)
    for window in windows:
        statement = segment_statement(caller, target, window.vector, query.filter, size, query.exact)
        for row in await session.execute(statement):
            found = _window_row(row, window)
            if found.match.segment_id not in best or found.match.distance < best[found.match.segment_id].match.distance:
                best[found.match.segment_id] = found
    rows = sorted(best.values(), key=lambda r: (r.match.distance, r.match.segment_id))
    if query.score_threshold is not None:
        rows = [row for row in rows if row.match.score >= query.score_threshold]
    return rows


def _window_row(row, window: QueryWindow) -> WindowRow:
    gid, segment_id, start, end, distance, tags, kind, owner, visibility, created_at, has_audio = row
    distance = float(distance)
    hit = Hit(
        generation_id=gid,
        latent_id=segment_id,
        distance=distance,
        score=1.0 - distance,
        tags=list(tags),
        kind=kind,
        owner=owner,
        visibility=visibility,
        created_at=created_at,
        has_audio=has_audio,
    )
    return WindowRow(hit, SegmentMatch(segment_id, float(start), float(end), distance, window.start, window.end))


def segment_statement(
    caller: Caller, target: Target, vector: np.ndarray, filters: SearchFilter, limit: int, exact: bool = False
) -> Select:
    """``ORDER BY embedding::halfvec(512) <=> q::halfvec(512) LIMIT n`` (the segments' HNSW index) over the windows
    of the model's space, every filter in the WHERE; the distance returned is the full-precision one (``_pool``
    orders the windows by it). ``exact``: an exact scan in full precision."""
    distance = LatentSegment.embedding.cosine_distance(vector)
    clauses = [LatentSegment.model_id == target.model.id, *filter_clauses(caller, filters)]
    if target.exclude:
        clauses.append(LatentSegment.generation_id.not_in(target.exclude))
    order = scan_order(distance, LatentSegment.embedding, vector, exact)
    return (
        select(
            LatentSegment.generation_id,
            LatentSegment.id,
            LatentSegment.start_seconds,
            LatentSegment.end_seconds,
            distance.label("distance"),
            *HIT_COLUMNS,
            audio_exists(Generation.id),
        )
        .join(Generation, Generation.id == LatentSegment.generation_id)
        .where(*clauses)
        .order_by(order, LatentSegment.id)
        .limit(limit)
    )


async def _items_by_window(
    session: AsyncSession, caller: Caller, target: Target, query: SearchQuery, windows: list[QueryWindow]
) -> list[Hit]:
    """Whole items, each query window searched on its own; an item keeps its best query window."""
    best: dict[uuid.UUID, Hit] = {}
    for window in windows:
        around = replace(target, vector=window.vector)
        for hit in await nearest(session, caller, around, query.filter, query.limit, exact=query.exact):
            if hit.generation_id not in best or hit.distance < best[hit.generation_id].distance:
                best[hit.generation_id] = replace(hit, query_start=window.start, query_end=window.end)
    hits = sorted(best.values(), key=lambda h: (h.distance, h.latent_id))
    if query.score_threshold is not None:
        hits = [hit for hit in hits if hit.score >= query.score_threshold]
    return hits[: query.limit]

"""An item's public neighbours ("sounds like this generation"), served from the read cache.

One list per (item, limit) serves every caller, so it holds public items only: the nearest public, live,
unarchived items in the item's latent space (chosen as ``discovery.search`` chooses it), the item itself left
out. The caller must see the item (404 otherwise, on every read). A cached list is checked on every read with one
primary-key query (the item still visible to the caller, every hit still public, live and unarchived); if one is
not, the list is computed again. So a hit made private, deleted or archived through any process (a worker's
lifecycle pass included) is never shown, even before its invalidation reaches the cache. Writes that change what a
list should hold (``PATCH``/``DELETE /v1/generations/{id}``) forget the space; an item that gains a latent (a new
generation, a re-encode) joins the lists within the TTL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import msgspec
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import Generation
from service.domain.access.api_keys import Caller
from service.domain.access.visibility import visible_to
from service.domain.cache.store import ReadCache, Space
from service.domain.discovery import search
from service.domain.errors import InvalidInput

NEIGHBOURS = Space("neighbours", ttl=60.0)
# Sees public items only: visible_to() also passes a viewer's own items, and no API key's owner has this name
# (hits are checked to be public as well, so even one that did could not widen what a list holds).
PUBLIC_VIEWER = Caller(owner="soundalike:public-neighbours", role="reader", key_id=0)


@dataclass(frozen=True)
class Neighbours:
    model: str  # alias of the model whose space the list was found in
    hits: list[search.Hit] = field(default_factory=list)


async def public_neighbours(
    session: AsyncSession, caller: Caller, generation_id: uuid.UUID, limit: int, cache: ReadCache
) -> Neighbours:
    """The ``limit`` nearest public items to ``generation_id`` (which the caller must see)."""
    if not 1 <= limit <= search.MAX_LIMIT:
        raise InvalidInput("limit", f"limit must be in [1, {search.MAX_LIMIT}]; got {limit}")
    key = f"{generation_id}:{limit}"
    found = await cache.backend.lookup(NEIGHBOURS, key)
    if found.value is not None:
        cached = msgspec.json.decode(found.value, type=Neighbours)
        if await _still_valid(session, caller, generation_id, cached):
            return cached
    return await cache.compute_and_store(
        NEIGHBOURS, key, found.generation, lambda: _compute(session, caller, generation_id, limit)
    )


async def _compute(session: AsyncSession, caller: Caller, generation_id: uuid.UUID, limit: int) -> Neighbours:
    model, vectors = await search.latents_of(session, caller, [generation_id], "generation_id")
    target = search.Target(model, vectors[0], exclude=(generation_id,))
    hits = await search.nearest(session, PUBLIC_VIEWER, target, search.SearchFilter(), limit)
    return Neighbours(model.alias, [hit for hit in hits if hit.visibility == "public"])


async def _still_valid(session: AsyncSession, caller: Caller, generation_id: uuid.UUID, cached: Neighbours) -> bool:
    hit_ids = [hit.generation_id for hit in cached.hits]
    public = and_(
        Generation.id.in_(hit_ids),
        Generation.visibility == "public",
        Generation.deleted_at.is_(None),
        Generation.archived_at.is_(None),
    )
    source = and_(Generation.id == generation_id, visible_to(caller))
    found = set(await session.scalars(select(Generation.id).where(or_(source, public))))
    return generation_id in found and found.issuperset(hit_ids)


async def forget_all(cache: ReadCache) -> None:
    """After a write that may change any list (an item's visibility, a deletion)."""
    await cache.forget(NEIGHBOURS)

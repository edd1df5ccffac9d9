"""Lineage: where a generation comes from (parents, the neighbour it was styled after) and what came of it
(variants, transfers, recursively). Only generations the caller may see are shown."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import Generation
from service.domain.access.api_keys import Caller
from service.domain.generation.generations import GenerationView, get_view, get_views

MAX_DEPTH = 20


@dataclass(frozen=True)
class Relative:
    view: GenerationView
    depth: int  # 1 = parent / child
    relation: str  # "parent" or "style_neighbor" (ancestors); "variant" or "style_transfer" (descendants)


@dataclass(frozen=True)
class Lineage:
    generation: GenerationView
    ancestors: list[Relative]
    descendants: list[Relative]


async def lineage(session: AsyncSession, caller: Caller, generation_id: uuid.UUID) -> Lineage:
    root = await get_view(session, caller, generation_id)
    up = await _walk(session, generation_id, upwards=True)
    down = await _walk(session, generation_id, upwards=False)
    return Lineage(root, await _visible(session, caller, up), await _visible(session, caller, down))


async def _walk(session: AsyncSession, start: uuid.UUID, upwards: bool) -> list[tuple[uuid.UUID, int, str]]:
    """Recursive CTE over parent links; upwards also reports each step's style neighbour (not walked further)."""
    g = Generation.__table__
    if upwards:
        seed = select(g.c.parent_id.label("id"), literal(1).label("depth")).where(g.c.id == start)
        tree = seed.cte("tree", recursive=True)
        step = select(g.c.parent_id, tree.c.depth + 1).join(tree, g.c.id == tree.c.id)
    else:
        seed = select(g.c.id.label("id"), literal(1).label("depth")).where(g.c.parent_id == start)
        tree = seed.cte("tree", recursive=True)
        step = select(g.c.id, tree.c.depth + 1).join(tree, g.c.parent_id == tree.c.id)
    tree = tree.union(step.where(tree.c.depth < MAX_DEPTH))
    rows = (
        await session.execute(
            select(tree.c.id, tree.c.depth, g.c.kind, g.c.neighbor_id)
            .join(g, g.c.id == tree.c.id)
            .where(tree.c.id.is_not(None))
            .order_by(tree.c.depth)
        )
    ).all()
    if not upwards:
        return [(gid, depth, kind) for gid, depth, kind, _ in rows]
    out = [(gid, depth, "parent") for gid, depth, _, _ in rows]
    start_neighbor = await session.scalar(select(g.c.neighbor_id).where(g.c.id == start))
    neighbours = [(start_neighbor, 1)] + [(n, depth + 1) for _, depth, _, n in rows]
    out += [(n, depth, "style_neighbor") for n, depth in neighbours if n is not None]
    return out


async def _visible(session: AsyncSession, caller: Caller, found: list[tuple[uuid.UUID, int, str]]) -> list[Relative]:
    views = {v.row.id: v for v in await get_views(session, caller, list({gid for gid, _, _ in found}))}
    return [Relative(views[gid], depth, relation) for gid, depth, relation in found if gid in views]

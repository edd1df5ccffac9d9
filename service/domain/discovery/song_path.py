"""A song path: tracks that lead from one item to another along the great circle between their latents."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import Model
from service.domain.access.api_keys import Caller
from service.domain.discovery.search import SearchFilter, Target, latents_of, nearest, unit_rows
from service.domain.errors import InvalidInput

MIN_PATH_STEPS, MAX_PATH_STEPS = 3, 50


@dataclass(frozen=True)
class PathStop:
    generation_id: uuid.UUID
    position: float  # 0 at the start, 1 at the end
    similarity: float  # cosine similarity to the waypoint it was chosen for


async def song_path(
    session: AsyncSession,
    caller: Caller,
    start: uuid.UUID,
    end: uuid.UUID,
    steps: int,
    filters: SearchFilter | None = None,
) -> tuple[Model, list[PathStop]]:
    """``steps`` tracks from ``start`` to ``end``: each interior stop is the nearest unused visible item to the
    waypoint on the great circle between the two latents (no repeats)."""
    if not MIN_PATH_STEPS <= steps <= MAX_PATH_STEPS:
        raise InvalidInput("steps", f"steps must be in [{MIN_PATH_STEPS}, {MAX_PATH_STEPS}]; got {steps}", "query")
    if start == end:
        raise InvalidInput("to", "from and to are the same generation; a path needs two", "query")
    model, first = await latents_of(session, caller, [start], "from")
    try:
        _, last = await latents_of(session, caller, [end], "to", model, space_field="to")
    except InvalidInput as exc:  # a path walks within one model's latent space
        raise InvalidInput("to", f"{exc.message}; a path walks within one model's latent space", "query") from None
    a, b = unit_rows(first)[0], unit_rows(last)[0]
    stops, used = [PathStop(start, 0.0, 1.0)], [start, end]
    for index in range(1, steps - 1):
        position = index / (steps - 1)
        waypoint = slerp(a, b, position)
        target = Target(model, waypoint, exclude=tuple(used))
        hits = await nearest(session, caller, target, filters or SearchFilter(), 1)
        if not hits:
            break
        stops.append(PathStop(hits[0].generation_id, position, hits[0].score))
        used.append(hits[0].generation_id)
    stops.append(PathStop(end, 1.0, 1.0))
    return model, stops


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The point a fraction ``t`` along the great circle from unit vector ``a`` to ``b``."""
    omega = math.acos(float(np.clip(a @ b, -1.0, 1.0)))
    if omega < 1e-6:
        return a
    return (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)

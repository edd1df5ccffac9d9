"""Which model a request means: its alias, or the default model when none is given."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Model
from service.domain.errors import Conflict, InvalidInput


async def resolve_model(session: AsyncSession, alias: str | None, for_new_work: bool = False) -> Model:
    if alias is None:
        model = await session.scalar(select(Model).where(Model.is_default))
        if model is None:
            raise Conflict("no default model is registered; register one with `soundalike models set-default`")
    else:
        model = await session.scalar(select(Model).where(Model.alias == alias))
        if model is None:
            known = list(
                await session.scalars(select(Model.alias).where(Model.status != "ARCHIVED").order_by(Model.alias))
            )
            raise InvalidInput("model", f"unknown model alias {alias!r}; known: {', '.join(known) or 'none'}")
    if for_new_work and model.status == "ARCHIVED":
        raise Conflict(f"model {model.alias!r} is archived: it keeps its data but makes nothing new")
    return model

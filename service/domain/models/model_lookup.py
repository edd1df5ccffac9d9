"""Which model a request means, through the registry, in the domain's own errors (404/409/422)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import Model
from service.domain.errors import Conflict, InvalidInput
from service.domain.models import registry


async def resolve_model(session: AsyncSession, alias: str | None, for_new_work: bool = False) -> Model:
    """The model named by ``alias`` (or the default); ``for_new_work`` also refuses archived/failed ones."""
    try:
        model = await registry.resolve_alias(session, alias)
        return registry.ensure_usable(model) if for_new_work else model
    except registry.ModelUnavailable as exc:
        raise Conflict(str(exc)) from None
    except registry.ModelNotFound as exc:
        if alias is None:
            raise Conflict(str(exc)) from None
        known = await session.scalars(select(Model.alias).where(Model.status != "ARCHIVED").order_by(Model.alias))
        raise InvalidInput("model", f"unknown model alias {alias!r}; known: {', '.join(known) or 'none'}") from None

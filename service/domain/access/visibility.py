"""Who sees what: a caller sees its own items and public ones (admins see all); deleted items nobody sees."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, or_, true

from service.db.schema.models import Generation
from service.domain.access.api_keys import Caller


def visible_to(caller: Caller) -> ColumnElement[bool]:
    alive = Generation.deleted_at.is_(None)
    if caller.is_admin:
        return and_(alive, true())
    return and_(alive, or_(Generation.owner == caller.owner, Generation.visibility == "public"))


def owned_by(caller: Caller) -> ColumnElement[bool]:
    """What the caller may change: its own items (admins: all)."""
    alive = Generation.deleted_at.is_(None)
    return alive if caller.is_admin else and_(alive, Generation.owner == caller.owner)

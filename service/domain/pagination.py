"""Opaque keyset cursors: over (created_at, id), newest first; and over one growing id (clusters, the map)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, or_

from service.domain.errors import InvalidInput

CURSOR_REFUSAL = "cursor is not one this API handed out; start again without it"
MAX_BIGINT = 2**63 - 1


def encode_cursor(created_at: datetime, item_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(item_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, item_id = json.loads(raw)
        return datetime.fromisoformat(created_at), uuid.UUID(item_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("cursor", CURSOR_REFUSAL) from exc


def older_than(created_column, id_column, cursor: str | None) -> ColumnElement[bool] | None:
    """The keyset condition for the page after ``cursor`` (None for the first page)."""
    if cursor is None:
        return None
    created_at, item_id = decode_cursor(cursor)
    return or_(created_column < created_at, (created_column == created_at) & (id_column < item_id))


def encode_id_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode().rstrip("=")


def decode_id_cursor(cursor: str | None) -> int:
    """The id a page starts after (0 for the first page)."""
    if cursor is None:
        return 0
    try:
        after = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["after"]
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput("cursor", CURSOR_REFUSAL, "query") from exc
    if not isinstance(after, int) or not 0 <= after <= MAX_BIGINT:
        raise InvalidInput("cursor", CURSOR_REFUSAL, "query")
    return after

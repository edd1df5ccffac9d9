"""API keys: random secrets shown once, stored as an HMAC-SHA256 under the server's secret."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.schema.models import API_KEY_ROLES, ApiKey

KEY_PREFIX = "sk_"
DISPLAY_PREFIX_LENGTH = 10
REVOKED_CHANNEL = "soundalike_key_revoked"  # payload: a revoked key's cache keys; each process's EventHub listens
ROLE_RANK = {role: rank for rank, role in enumerate(API_KEY_ROLES)}  # reader < creator < admin


@dataclass(frozen=True)
class Caller:
    """Who is calling: the owner their items belong to, and what they may do."""

    owner: str
    role: str
    key_id: int

    def has_role(self, needed: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[needed]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class IssuedKey:
    id: int
    key: str  # the only time the plaintext exists
    prefix: str
    owner: str
    role: str


def hash_key(key: str, secret: str) -> str:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


def validate_role(role: str) -> str:
    if role not in ROLE_RANK:
        raise ValueError(f"role must be one of {', '.join(API_KEY_ROLES)}, got {role!r}")
    return role


async def create_key(session: AsyncSession, secret: str, owner: str, role: str, label: str | None = None) -> IssuedKey:
    validate_role(role)
    if not owner.strip():
        raise ValueError("owner must not be empty")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        key_hash=hash_key(key, secret), prefix=key[:DISPLAY_PREFIX_LENGTH], owner=owner, role=role, label=label
    )
    session.add(row)
    await session.flush()
    return IssuedKey(id=row.id, key=key, prefix=row.prefix, owner=owner, role=role)


async def authenticate(
    sessions: async_sessionmaker[AsyncSession], secret: str, key: str, cache: CallerCache
) -> Caller | None:
    """The caller a key belongs to, or None for an unknown or revoked key; a key in ``cache`` skips the lookup."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_hash = hash_key(key, secret)
    return await live_caller(sessions, cache, key_hash, ApiKey.key_hash == key_hash)


async def live_caller(
    sessions: async_sessionmaker[AsyncSession], cache: CallerCache, cache_key: str, which: ColumnElement[bool]
) -> Caller | None:
    """The caller of the unrevoked key ``which`` selects (None when there is none), remembered in ``cache``
    under ``cache_key``."""
    caller = await cache.get(cache_key)
    if caller is None:
        async with sessions() as session:
            row = await session.scalar(select(ApiKey).where(which, ApiKey.revoked_at.is_(None)))
        caller = Caller(owner=row.owner, role=row.role, key_id=row.id) if row else None
        if caller is not None:
            await cache.put(cache_key, caller)
    return caller


def session_cache_key(key_id: int) -> str:
    """Where the callers of browser sessions made from key ``key_id`` are cached (``web_sessions``)."""
    return f"session-key:{key_id}"


class CallerCache(Protocol):
    """Checked keys by cache key (a key's hash, or ``session_cache_key``): ``KeyCache`` in one process, or
    ``shared_state.RedisKeyCache`` shared by all."""

    async def get(self, cache_key: str) -> Caller | None: ...

    async def put(self, cache_key: str, caller: Caller) -> None: ...

    async def forget(self, *cache_keys: str) -> None: ...


class KeyCache:
    """Keys a serving process authenticated in the last ``ttl`` seconds, by hash, so a request skips the key
    lookup (a pool checkout, a ping and a SELECT: half the app's cost of a search). A revocation made elsewhere
    (``soundalike keys revoke``) reaches it through ``REVOKED_CHANNEL`` (``drop``); while the process's listener
    is disconnected, within ``ttl`` seconds.
    Unknown keys are never cached, so a new key works at once; ``ttl`` 0 turns the cache off."""

    def __init__(self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.max_entries, self.clock = ttl, max_entries, clock
        self._entries: dict[str, tuple[Caller, float]] = {}

    async def get(self, key_hash: str) -> Caller | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        caller, expires = entry
        if self.clock() >= expires:
            del self._entries[key_hash]
            return None
        return caller

    async def put(self, key_hash: str, caller: Caller) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # many distinct keys in one ttl: start afresh rather than track ages
        self._entries[key_hash] = (caller, self.clock() + self.ttl)

    async def forget(self, *cache_keys: str) -> None:
        self.drop(cache_keys)

    def drop(self, cache_keys: list[str] | tuple[str, ...] | None) -> None:
        """Forget these entries; None: forget all."""
        if cache_keys is None:
            self._entries.clear()
        for cache_key in cache_keys or ():
            self._entries.pop(cache_key, None)


async def revoke_key(session: AsyncSession, key_id: int, cache: CallerCache | None = None) -> bool:
    """Revoke key ``key_id`` and commit; then drop it from ``cache`` (with a shared cache every serving process
    refuses it from the next request on). A NOTIFY on ``REVOKED_CHANNEL`` tells every serving process to drop it
    from its in-process cache too. False when there is no active key with that id."""
    key_hash = await session.scalar(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .returning(ApiKey.key_hash)
    )
    if key_hash is not None:  # every serving process's listener drops it from its own cache at the commit
        await session.execute(select(func.pg_notify(REVOKED_CHANNEL, f"{key_hash} {session_cache_key(key_id)}")))
    await session.commit()
    if key_hash is not None and cache is not None:
        await cache.forget(key_hash, session_cache_key(key_id))
    return key_hash is not None


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.id)))


async def any_admin_key(session: AsyncSession) -> bool:
    found = await session.scalar(select(ApiKey.id).where(ApiKey.role == "admin", ApiKey.revoked_at.is_(None)).limit(1))
    return found is not None

"""Live events: status changes of an owner's generations and batches, read from the ``events`` log.

Triggers on ``generations`` (migration 0006_events) append the events in the writer's own transaction and
``NOTIFY soundalike_events`` with the owner's name; the notification arrives at commit. Each serving process
keeps ONE listening connection (``EventHub``) and wakes the streams of that owner, which then read what is
new from the log: no polling loop per client, and a stream resumed after event N (``Last-Event-ID``) gets
every later event of its owner, in order, because one owner's events commit in id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.schema.models import Event
from service.db.server import urls
from service.domain.access.api_keys import REVOKED_CHANNEL
from service.domain.errors import DomainError

log = logging.getLogger(__name__)
CHANNEL = "soundalike_events"
READ_BATCH = 500


@dataclass(frozen=True)
class LiveEvent:
    id: int
    type: str  # "generation" or "batch"
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Ready:
    """The first item of a stream: the position it starts after (send it back to resume from here)."""

    after: int


@dataclass(frozen=True)
class KeepAlive:
    """Nothing happened for a while; a comment line keeps proxies from closing the connection."""


StreamItem = LiveEvent | Ready | KeepAlive


class EventHub:
    """One ``LISTEN`` connection per process that wakes the streams of the owner a notification names, and
    passes API-key revocations to the process's key cache (``follow_revocations``).

    It connects on first use and reconnects after a lost connection, then wakes every stream (they re-read the
    log, so nothing committed in between is lost)."""

    def __init__(self, database_url: str, connect_timeout: float = 10.0, reconnect_seconds: float = 1.0) -> None:
        self._url = urls.libpq_url(database_url)
        self._connect_timeout = connect_timeout
        self._reconnect_seconds = reconnect_seconds
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listening = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._followers: dict[str, Callable[[list[str] | None], None]] = {}

    def follow_revocations(self, forget: Callable[[list[str] | None], None]) -> None:
        """Listen from now on and call ``forget`` with the cache keys of every revoked key, and with None
        whenever listening (re)starts (a revocation may have gone by unheard)."""
        self.follow(REVOKED_CHANNEL, forget)

    def follow(self, channel: str, forget: Callable[[list[str] | None], None]) -> None:
        """Listen from now on and call ``forget`` with the words of every notification on ``channel``, and with
        None whenever listening (re)starts. Follow every channel before the hub's first await."""
        self._followers[channel] = forget
        if self._task is None or self._task.done():
            self._listening.clear()
            self._task = asyncio.create_task(self._listen(), name="event-hub")

    @contextlib.asynccontextmanager
    async def subscribe(self, owner: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever ``owner``'s events commit; listening has begun when this enters."""
        await self.ensure_listening()
        wake = asyncio.Event()
        self._waiters.setdefault(owner, set()).add(wake)
        try:
            yield wake
        finally:
            waiters = self._waiters.get(owner, set())
            waiters.discard(wake)
            if not waiters:
                self._waiters.pop(owner, None)

    def subscribers(self, owner: str) -> int:
        return len(self._waiters.get(owner, ()))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def ensure_listening(self) -> None:
        """Start listening (once per process); raises ``EventsUnavailable`` when the database is unreachable."""
        if self._task is None or self._task.done():
            self._listening.clear()
            self._task = asyncio.create_task(self._listen(), name="event-hub")
        try:
            await asyncio.wait_for(self._listening.wait(), self._connect_timeout)
        except TimeoutError:
            raise EventsUnavailable("the event listener could not connect to the database") from None

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    for channel in self._followers:
                        await conn.execute(f"LISTEN {channel}")
                    self._listening.set()
                    self._wake_all()
                    for forget in self._followers.values():
                        forget(None)
                    async for notify in conn.notifies():
                        if (forget := self._followers.get(notify.channel)) is not None:
                            forget(notify.payload.split())
                        else:
                            self._wake(notify.payload)
            except psycopg.Error as exc:
                self._listening.clear()
                log.warning("event listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(self._reconnect_seconds)

    def _wake(self, owner: str) -> None:
        for wake in self._waiters.get(owner, ()):
            wake.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for wake in waiters:
                wake.set()


class EventsUnavailable(DomainError):
    """The listener has no database connection."""

    status = 503


async def latest_id(sessions: async_sessionmaker[AsyncSession], owner: str) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.coalesce(func.max(Event.id), 0)).where(Event.owner == owner))


async def read_after(
    sessions: async_sessionmaker[AsyncSession], owner: str, after: int, limit: int = READ_BATCH
) -> list[LiveEvent]:
    """The owner's events with an id above ``after``, oldest first (a short session: no pooled connection is
    held while a stream waits)."""
    async with sessions() as session:
        rows = await session.scalars(
            select(Event).where(Event.owner == owner, Event.id > after).order_by(Event.id).limit(limit)
        )
        return [LiveEvent(id=r.id, type=r.type, data=r.data, created_at=r.created_at) for r in rows]


async def stream(
    hub: EventHub, sessions: async_sessionmaker[AsyncSession], owner: str, after: int | None, keepalive_seconds: float
) -> AsyncIterator[StreamItem]:
    """``Ready``, then the owner's events after ``after`` (from now when None) as they commit, with a
    ``KeepAlive`` after every ``keepalive_seconds`` of silence. Runs until the consumer stops iterating."""
    async with hub.subscribe(owner) as wake:
        position = await latest_id(sessions, owner) if after is None else after
        yield Ready(position)
        while True:
            wake.clear()
            events = await read_after(sessions, owner, position)
            for event in events:
                yield event
                position = event.id
            if len(events) == READ_BATCH:
                continue
            try:
                await asyncio.wait_for(wake.wait(), keepalive_seconds)
            except TimeoutError:
                yield KeepAlive()


async def prune(session: AsyncSession, retention_days: float) -> int:
    """Delete events older than the retention; a stream resumed from before that starts at the oldest kept."""
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    result = await session.execute(delete(Event).where(Event.created_at < cutoff))
    await session.commit()
    return result.rowcount

"""Read replicas: which one may serve a read, and read-your-writes by write position (LSN).

Scheme: after a request that committed a write, the API notes the primary's WAL position
(``pg_current_wal_lsn()``) for the caller's owner. A later read of that owner goes to a replica only if the
replica has replayed at least that far; otherwise it goes to the primary. Reads of anyone who has not
written (or whose writes every replica has replayed) go to any healthy replica.

A background task polls each replica every ``replica_poll_seconds``: its replay position and lag
(0 when it has replayed everything it received, else the age of the last replayed transaction). A replica
that is down, promoted, or lags more than ``replica_max_lag_seconds`` is skipped: reads fall back to the
primary, never to an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.db.engine import create_engine, session_factory
from service.db.server import urls
from service.settings import DatabaseSettings

log = logging.getLogger(__name__)

REPLICA_STATE = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
    "CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 "
    "     ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)
PRIMARY_LSN = text("SELECT pg_current_wal_lsn()::text")
MAX_TRACKED_WRITERS = 100_000


def parse_lsn(lsn: str | None) -> int:
    """``'16/B374D848'`` as a number (0 for None)."""
    if not lsn:
        return 0
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass
class Replica:
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    up: bool = False
    lag_seconds: float = 0.0
    replay_lsn: int = 0
    reason: str = "not checked yet"

    @property
    def name(self) -> str:
        return urls.describe(self.url)


@dataclass
class WriteLsns:
    """The primary's WAL position after each writer's last write (bounded; oldest writers forgotten first)."""

    limit: int = MAX_TRACKED_WRITERS
    _lsns: OrderedDict[str, int] = field(default_factory=OrderedDict)

    def note(self, writer: str, lsn: int) -> None:
        self._lsns[writer] = max(lsn, self._lsns.get(writer, 0))
        self._lsns.move_to_end(writer)
        while len(self._lsns) > self.limit:
            self._lsns.popitem(last=False)

    def of(self, writer: str | None) -> int:
        return self._lsns.get(writer, 0) if writer else 0

    def forget_replayed(self, replayed_everywhere: int) -> None:
        """Writes every replica has replayed need no routing any more."""
        for writer in [w for w, lsn in self._lsns.items() if lsn <= replayed_everywhere]:
            del self._lsns[writer]


class ReplicaSet:
    """The read replicas of one process, their polled health, and the writers' positions."""

    def __init__(self, read_urls: Iterable[str], db: DatabaseSettings) -> None:
        self.max_lag_seconds = db.replica_max_lag_seconds
        self.poll_seconds = db.replica_poll_seconds
        self.replicas = [self._replica(url, db) for url in read_urls]
        self.writes = WriteLsns()
        self._turn = itertools.count()
        self._poller: asyncio.Task | None = None

    @staticmethod
    def _replica(url: str, db: DatabaseSettings) -> Replica:
        engine = create_engine(urls.sqlalchemy_url(url, "SOUNDALIKE_DATABASE_READ_URLS"), db)
        return Replica(url=url, engine=engine, sessions=session_factory(engine))

    # -- health -------------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Poll every replica once (concurrently)."""
        await asyncio.gather(*(self._check(replica) for replica in self.replicas))
        live = [r.replay_lsn for r in self.replicas if r.up]
        if live and len(live) == len(self.replicas):
            self.writes.forget_replayed(min(live))

    async def _check(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(max(self.poll_seconds, 1.0) * 2):
                async with replica.engine.connect() as conn:
                    in_recovery, replay_lsn, lag = (await conn.execute(REPLICA_STATE)).one()
        except (DBAPIError, OSError, TimeoutError) as exc:
            self._mark(replica, False, f"unreachable: {str(exc).strip().splitlines()[0] if str(exc) else 'timeout'}")
            return
        if not in_recovery:
            self._mark(replica, False, "not in recovery (promoted?): it is no replica of the primary")
            return
        replica.replay_lsn, replica.lag_seconds = parse_lsn(replay_lsn), float(lag)
        self._mark(replica, True, "ok")

    def _mark(self, replica: Replica, up: bool, reason: str) -> None:
        if replica.up != up or (not up and replica.reason != reason):
            log.log(logging.INFO if up else logging.WARNING, "replica %s: %s", replica.name, reason)
        replica.up, replica.reason = up, reason

    def mark_down(self, replica: Replica, reason: str) -> None:
        """A request found the replica failing: skip it until the next poll says otherwise."""
        self._mark(replica, False, reason)

    async def start(self) -> None:
        await self.refresh()
        self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            await self.refresh()

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for replica in self.replicas:
            await replica.engine.dispose()

    # -- routing ------------------------------------------------------------------------------------------

    def usable(self, replica: Replica, min_lsn: int) -> bool:
        return replica.up and replica.lag_seconds <= self.max_lag_seconds and replica.replay_lsn >= min_lsn

    def for_read(self, writer: str | None) -> Replica | None:
        """A replica that may serve this writer's read (round robin), or None: read from the primary."""
        min_lsn = self.writes.of(writer)
        candidates = [r for r in self.replicas if self.usable(r, min_lsn)]
        if not candidates:
            return None
        return candidates[next(self._turn) % len(candidates)]

    async def note_write(self, writer: str, session: AsyncSession) -> None:
        """After ``writer``'s committed write on the primary: remember how far the WAL had got."""
        lsn = await session.scalar(PRIMARY_LSN)
        await session.commit()
        self.writes.note(writer, parse_lsn(lsn))

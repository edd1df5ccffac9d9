"""The database session of one request: the primary, or a read replica for a read.

A request reads from a replica when it is a GET/HEAD (or its handler has ``opt={"read_only": True}``), the
app has replicas, and one of them may serve the caller (``ReplicaSet.for_read``: healthy, not lagging, and
past the caller's last write). A replica that fails to connect is marked down and the request falls back to
the primary. After any other request that committed, the primary's WAL position is noted for the caller's
owner, so their next read sees their write (read-your-writes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request
from litestar.datastructures import State
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from service.db.replicas import Replica, ReplicaSet
from service.settings import DatabaseSettings

READ_ONLY = "read_only"  # handler opt: a POST that only reads (e.g. search)
READ_METHODS = {"GET", "HEAD"}
COMMITTED = "soundalike.committed"  # Session.info flag: this session committed at least once


def is_read_only(request: Request) -> bool:
    return request.method in READ_METHODS or bool(request.route_handler.opt.get(READ_ONLY))


def writer_of(request: Request) -> str | None:
    caller = request.scope.get("user")
    return getattr(caller, "owner", None)


@asynccontextmanager
async def request_session(state: State, request: Request) -> AsyncIterator[AsyncSession]:
    replicas: ReplicaSet | None = state.get("replicas")
    if replicas is not None and is_read_only(request):
        replica = replicas.for_read(writer_of(request))
        session = await _open_on(replica, replicas) if replica else None
        if session is not None:
            async with session:
                yield session
            return
    async with state.sessionmaker() as session:
        yield session
        if replicas is not None and _committed(session) and (writer := writer_of(request)):
            await replicas.note_write(writer, session)


async def _open_on(replica: Replica, replicas: ReplicaSet) -> AsyncSession | None:
    session = replica.sessions()
    try:
        await session.connection()
    except DBAPIError as exc:
        await session.close()
        replicas.mark_down(replica, f"a request could not connect: {str(exc.orig).strip().splitlines()[0]}")
        return None
    return session


def _committed(session: AsyncSession) -> bool:
    return session.info.get(COMMITTED, False)


@event.listens_for(Session, "after_commit")
def _note_commit(session: Session) -> None:
    session.info[COMMITTED] = True


def replicas_lifespan(db: DatabaseSettings):
    """App lifespan: poll the read replicas of ``SOUNDALIKE_DATABASE_READ_URLS`` while the app runs."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.replicas = ReplicaSet(db.read_url_list, db) if db.read_url_list else None
        if app.state.replicas is None:
            yield
            return
        await app.state.replicas.start()
        try:
            yield
        finally:
            await app.state.replicas.close()

    return lifespan

"""The default model, remembered by each serving process so a search that names no model skips its lookup.

Every change to the ``models`` table made through the ORM (a row added, changed or deleted, or a bulk
``update(Model)``/``delete(Model)``: a new default, a rename, an archive) sends ``NOTIFY soundalike_models_changed``
in its own transaction, like key revocations (``api_keys.REVOKED_CHANNEL``); each API process's event hub listens
and drops its cached default at the commit (``drop``), and a change committed in this process drops it at once.
Status moves among READY, LOADING and RUNNING (``registry.WORKING_STATUS_ONLY``: workers make two per job) change
nothing a search uses and send nothing. A change made another way (plain SQL) or while the listener was
reconnecting is seen within ``TTL_SECONDS``; the listener also drops the cache whenever it (re)connects.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

from sqlalchemy import event, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction

from service.db.schema.models import Model
from service.domain.models import registry
from service.domain.models.model_lookup import resolve_model

MODELS_CHANNEL = "soundalike_models_changed"
TTL_SECONDS = 5.0
CHANGED = "soundalike.models_changed"  # Session.info flag: this transaction changed the models table
_caches: weakref.WeakSet[DefaultModelCache] = weakref.WeakSet()


class DefaultModelCache:
    """The default model (a copy in no session) for ``ttl`` seconds, or until a change to the registry drops it."""

    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._model: Model | None = None
        self._expires = 0.0
        self._version = 0  # counts drops: a lookup that raced a change is not kept
        _caches.add(self)

    async def get(self, session: AsyncSession) -> Model:
        """The default model; the domain's 409 (``resolve_model``) when there is none."""
        if self._model is not None and self.clock() < self._expires:
            return self._model
        version = self._version
        model = _copy(await resolve_model(session, None))
        if version == self._version and self.ttl > 0:
            self._model, self._expires = model, self.clock() + self.ttl
        return model

    def drop(self, _payload: list[str] | None = None) -> None:
        """Forget the cached default (the event hub's callback: the payload does not matter)."""
        self._model = None
        self._version += 1


def _copy(model: Model) -> Model:
    """A copy of ``model``'s columns in no session: one request's session can never expire or refresh it."""
    return Model(**{column.key: getattr(model, column.key) for column in inspect(Model).column_attrs})


def _changed(session: Session) -> None:
    if not session.info.get(CHANGED):
        session.info[CHANGED] = True
        session.connection().exec_driver_sql(f"NOTIFY {MODELS_CHANNEL}")  # delivered at the commit, if any


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _flush: UOWTransaction) -> None:
    if any(isinstance(row, Model) for row in (*session.new, *session.dirty, *session.deleted)):
        _changed(session)


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    if state.execution_options.get(registry.WORKING_STATUS_ONLY):
        return
    if (state.is_update or state.is_delete or state.is_insert) and any(m.class_ is Model for m in state.all_mappers):
        _changed(state.session)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.get(CHANGED):
        for cache in list(_caches):
            cache.drop()


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(CHANGED, None)

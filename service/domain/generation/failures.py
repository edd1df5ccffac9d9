"""Why a generation failed, in four classes an operator can act on:

- ``bad_input``: the request itself cannot be produced (a source clip lost its latent, an invalid parameter);
- ``model_error``: the model could not be loaded or its output was unusable;
- ``resource_exhaustion``: memory, disk, connections or another limit ran out;
- ``infrastructure``: the database, the network or the worker process failed (a worker that died repeatedly).

The class is stored on the generation row (``generations.failure_class``) next to the error text and counted
in the metrics, so "failed because of resources or input?" is one query::

    SELECT failure_class, count(*) FROM generations WHERE status = 'failed' GROUP BY failure_class;
"""

from __future__ import annotations

import errno
import uuid

import psycopg
import sqlalchemy.exc
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import FAILURE_CLASSES, Generation
from service.domain.errors import DomainError
from service.metrics import GENERATION_FAILURES

BAD_INPUT, MODEL_ERROR, RESOURCE_EXHAUSTION, INFRASTRUCTURE = FAILURE_CLASSES
RESOURCE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
RESOURCE_SQLSTATE_CLASS = "53"  # PostgreSQL's "insufficient resources": disk full, out of memory, connections
RESOURCE_WORDS = ("out of memory", "cannot allocate memory", "can't allocate memory", "no space left")
CONNECTION_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    ConnectionError,
)
_STAGE = "_soundalike_failure_stage"
MODEL_STAGE = "model"


def mark_model_stage(exc: BaseException) -> None:
    """Note that ``exc`` came out of loading or running a model (set by the model cache)."""
    setattr(exc, _STAGE, MODEL_STAGE)


def classify(exc: BaseException) -> str:
    """The failure class of an exception that ended a generation job."""
    if _is_resource_exhaustion(exc):
        return RESOURCE_EXHAUSTION
    if any(isinstance(error, CONNECTION_ERRORS) for error in _chain(exc)):
        return INFRASTRUCTURE
    if getattr(exc, _STAGE, None) == MODEL_STAGE:
        return MODEL_ERROR
    if isinstance(exc, ValueError | DomainError):
        return BAD_INPUT
    return INFRASTRUCTURE


def _is_resource_exhaustion(exc: BaseException) -> bool:
    for error in _chain(exc):
        if isinstance(error, MemoryError | sqlalchemy.exc.TimeoutError):  # TimeoutError: the pool ran dry
            return True
        if isinstance(error, OSError) and error.errno in RESOURCE_ERRNOS:
            return True
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(RESOURCE_SQLSTATE_CLASS):
            return True
        if type(error).__name__ == "OutOfMemoryError" or any(w in str(error).lower() for w in RESOURCE_WORDS):
            return True
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (``raise ... from``, the DBAPI error inside SQLAlchemy's)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return seen


async def record(session: AsyncSession, ids: list[uuid.UUID], failure_class: str) -> int:
    """Set the class on those of ``ids`` that are failed and not yet classified; count them in the metrics."""
    if failure_class not in FAILURE_CLASSES:
        raise ValueError(f"failure class must be one of {', '.join(FAILURE_CLASSES)}, got {failure_class!r}")
    result = await session.execute(
        update(Generation)
        .where(Generation.id.in_(ids), Generation.status == "failed", Generation.failure_class.is_(None))
        .values(failure_class=failure_class)
    )
    await session.commit()
    if result.rowcount:
        GENERATION_FAILURES.labels(failure_class=failure_class).inc(result.rowcount)
    return result.rowcount

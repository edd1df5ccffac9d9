"""Start-up and readiness checks, each failing with one line that says what to do."""

from __future__ import annotations

import sqlalchemy as sa

from service.db.schema.migrate import current_revision, head_revision
from service.db.schema.migration_support import MIN_PGVECTOR
from service.errors import DatabaseError


def check_pgvector(connection: sa.Connection) -> str:
    version = connection.execute(sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
    if version is None:
        raise DatabaseError(
            "pgvector is not installed in this database: run `CREATE EXTENSION vector;` as a superuser "
            f"(pgvector >= {'.'.join(map(str, MIN_PGVECTOR))} is needed)"
        )
    if tuple(int(part) for part in version.split(".")[:2]) < MIN_PGVECTOR:
        raise DatabaseError(
            f"pgvector {version} is too old: upgrade to >= {'.'.join(map(str, MIN_PGVECTOR))} "
            "(then `ALTER EXTENSION vector UPDATE;`)"
        )
    return version


def check_schema_at_head(connection: sa.Connection) -> str:
    current, head = current_revision(connection), head_revision()
    if current != head:
        raise DatabaseError(
            f"database schema is at {current or 'nothing (empty database)'} but the code needs {head}: "
            "run `soundalike db upgrade` (or `make migrate`)"
        )
    return current


def check_ready(connection: sa.Connection) -> dict[str, str]:
    """Everything the service needs from the database; raises DatabaseError on the first problem."""
    return {"pgvector": check_pgvector(connection), "schema": check_schema_at_head(connection)}

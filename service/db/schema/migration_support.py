"""Helpers that migration scripts call (kept here so revisions stay short and testable)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.errors import DatabaseError

MIN_PGVECTOR = (0, 8)

# Tables other tools own (procrastinate's queue) stay out of autogenerate and drift checks.
FOREIGN_TABLE_PREFIXES = ("procrastinate_",)


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic filter: compare only the tables our ORM owns."""
    table_name = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", "")
    return not (table_name or "").startswith(FOREIGN_TABLE_PREFIXES)


def app_role() -> str:
    """The application role's name, as configured for this migration run."""
    return op.get_context().config.attributes["app_role"]


def create_extension_vector() -> None:
    """Create pgvector when we may; otherwise it must already be there (provisioning, as a superuser)."""
    bind = op.get_bind()
    installed = bind.execute(sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
    if installed is None:
        is_superuser = bind.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar()
        if not is_superuser:
            raise DatabaseError(
                "pgvector is not installed in this database and the migration role may not create it: "
                "run `CREATE EXTENSION vector;` as a superuser (or `soundalike db provision --admin-url ...`)"
            )
        op.execute("CREATE EXTENSION vector")


def drop_extension_vector_if_ours() -> None:
    """Drop pgvector on downgrade only if this role created it; a superuser's extension stays."""
    owned = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT 1 FROM pg_extension e JOIN pg_roles r ON r.oid = e.extowner "
                "WHERE e.extname = 'vector' AND r.rolname = current_user"
            )
        )
        .scalar()
    )
    if owned:
        op.execute("DROP EXTENSION vector")

"""Differences between the ORM metadata and a migrated database (empty when they agree)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.db.schema.migration_support import include_object
from service.db.schema.models import Base


def schema_drift(connection: sa.Connection) -> list:
    context = MigrationContext.configure(
        connection,
        opts={"include_object": include_object, "compare_type": True, "target_metadata": Base.metadata},
    )
    return compare_metadata(context, Base.metadata)

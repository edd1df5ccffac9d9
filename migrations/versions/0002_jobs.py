"""Jobs: procrastinate's queue schema, the job behind each generation, and the archive of latents.

procrastinate has no Alembic integration: its shipped schema SQL (pinned version, see pyproject) is applied
here; a later procrastinate upgrade ships migration SQL files that belong in later revisions.
Archived latents move to ``archived_latents``, which has no vector index, so they leave the HNSW index
but stay readable.

Revision ID: 0002_jobs
Revises: 0001_initial
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import pgvector.sqlalchemy
import sqlalchemy as sa
from alembic import op
from procrastinate.schema import SchemaManager

revision: str = "0002_jobs"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(SchemaManager.get_schema())
    op.add_column("generations", sa.Column("job_id", sa.BigInteger))
    op.create_index("ix_generations_status_created_at", "generations", ["status", "created_at"])
    op.create_table(
        "archived_latents",
        sa.Column("id", sa.BigInteger, nullable=False),
        sa.Column("generation_id", sa.Uuid, nullable=False),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("embedding", pgvector.sqlalchemy.Vector(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_archived_latents"),
        sa.UniqueConstraint("generation_id", name="uq_archived_latents_generation_id"),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            ondelete="CASCADE",
            name="fk_archived_latents_generation_id_generations",
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_archived_latents_model_id_models"),
    )


def downgrade() -> None:
    op.drop_table("archived_latents")
    op.drop_index("ix_generations_status_created_at", "generations")
    op.drop_column("generations", "job_id")
    _drop_procrastinate()


def _drop_procrastinate() -> None:
    bind = op.get_bind()
    for (table,) in bind.execute(sa.text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'procrastinate\\_%'")):
        op.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
    functions = bind.execute(
        sa.text("SELECT oid::regprocedure::text FROM pg_proc WHERE proname LIKE 'procrastinate\\_%'")
    ).scalars()
    for signature in list(functions):
        op.execute(f"DROP FUNCTION IF EXISTS {signature} CASCADE")
    for (type_name,) in bind.execute(
        sa.text("SELECT typname FROM pg_type WHERE typname LIKE 'procrastinate\\_%' AND typtype IN ('e', 'c')")
    ):
        op.execute(f'DROP TYPE IF EXISTS "{type_name}" CASCADE')

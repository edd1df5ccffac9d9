"""Search: batches of variants, and the batch each generation belongs to.

A batch records the request (sources, counts, parameters) and its total; progress is counted from its
generations' statuses, so it can never drift from them.

Revision ID: 0005_search
Revises: 0004_indexing
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_search"
down_revision: str | None = "0004_indexing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Uuid, server_default=sa.func.gen_random_uuid(), nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("params", postgresql.JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
        sa.CheckConstraint("kind IN ('variant')", name="ck_batches_kind"),
        sa.CheckConstraint("total > 0", name="ck_batches_total_positive"),
    )
    op.create_index("ix_batches_owner_created_at", "batches", ["owner", "created_at"])
    op.add_column("generations", sa.Column("batch_id", sa.Uuid))
    op.create_foreign_key("fk_generations_batch_id_batches", "generations", "batches", ["batch_id"], ["id"])
    op.create_index("ix_generations_batch_id", "generations", ["batch_id"])
    op.create_index("ix_generations_neighbor_id", "generations", ["neighbor_id"])


def downgrade() -> None:
    op.drop_index("ix_generations_neighbor_id", "generations")
    op.drop_index("ix_generations_batch_id", "generations")
    op.drop_constraint("fk_generations_batch_id_batches", "generations", type_="foreignkey")
    op.drop_column("generations", "batch_id")
    op.drop_index("ix_batches_owner_created_at", "batches")
    op.drop_table("batches")

"""Re-encode batches: an item may hold a latent in several models' spaces.

``latent_embeddings`` and ``archived_latents`` were unique on ``generation_id`` (one latent per item); they are
now unique on ``(generation_id, model_id)``: one latent per item and model, so a re-encode that runs twice
never stores an item twice. A batch may be of kind ``reencode``; its items (one row per generation, in chunks
the workers take one job each) carry their own status, so progress, cancel and resume never depend on the
jobs that process them.

Downgrading keeps one latent per item (the one in the model that produced it when it has one) and drops the
re-encode batches.

Revision ID: 0008_reencode
Revises: 0007_failure_class
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_reencode"
down_revision: str | None = "0007_failure_class"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LATENT_TABLES = ("latent_embeddings", "archived_latents")
ITEM_STATUSES = "status IN ('pending', 'succeeded', 'failed', 'cancelled')"

# Per item, every latent but the one in the producing model's space (or the oldest one when that is gone).
EXTRA_LATENTS = """
DELETE FROM {table} WHERE id IN (
    SELECT id FROM (
        SELECT l.id, row_number() OVER (
            PARTITION BY l.generation_id ORDER BY (l.model_id = g.model_id) DESC, l.id
        ) AS rank
        FROM {table} l JOIN generations g ON g.id = l.generation_id
    ) ranked WHERE rank > 1
)
"""


def upgrade() -> None:
    for table in LATENT_TABLES:
        op.drop_constraint(f"uq_{table}_generation_id", table, type_="unique")
        op.create_unique_constraint(f"uq_{table}_generation_id_model_id", table, ["generation_id", "model_id"])
    op.drop_constraint("ck_batches_kind", "batches", type_="check")
    op.create_check_constraint("ck_batches_kind", "batches", "kind IN ('variant', 'reencode')")
    op.create_table(
        "reencode_items",
        sa.Column("batch_id", sa.Uuid, nullable=False),
        sa.Column("generation_id", sa.Uuid, nullable=False),
        sa.Column("chunk", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, server_default=sa.text("'pending'"), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("batch_id", "generation_id", name="pk_reencode_items"),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], ondelete="CASCADE", name="fk_reencode_items_batch_id_batches"
        ),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            ondelete="CASCADE",
            name="fk_reencode_items_generation_id_generations",
        ),
        sa.CheckConstraint(ITEM_STATUSES, name="ck_reencode_items_status"),
    )
    op.create_index("ix_reencode_items_batch_id_chunk", "reencode_items", ["batch_id", "chunk"])
    op.create_index("ix_reencode_items_generation_id", "reencode_items", ["generation_id"])


def downgrade() -> None:
    op.drop_table("reencode_items")
    op.execute("DELETE FROM batches WHERE kind = 'reencode'")
    op.drop_constraint("ck_batches_kind", "batches", type_="check")
    op.create_check_constraint("ck_batches_kind", "batches", "kind IN ('variant')")
    for table in LATENT_TABLES:
        op.execute(EXTRA_LATENTS.format(table=table))
        op.drop_constraint(f"uq_{table}_generation_id_model_id", table, type_="unique")
        op.create_unique_constraint(f"uq_{table}_generation_id", table, ["generation_id"])

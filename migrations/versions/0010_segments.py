"""Whole tracks and segments, and the "nothing similar" signal.

``latent_segments``: the per-window latents of a file longer than one model window (the windows the encoder
pools into the searched vector), one model's space per row, with their own HNSW index (cosine); visibility,
deletion and archival come from the generation they belong to. ``generations.in_domain`` is the model's
score (0-1) of how much an imported file sounds like music it knows, ``in_domain_ok`` that score against the
model's calibrated threshold at import time (NULL for generated clips, which are music by construction):
speech or noise is stored but flagged, and search can leave flagged items out.

Revision ID: 0010_segments
Revises: 0009_webhooks
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector

revision: str = "0010_segments"
down_revision: str | None = "0009_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("generations", sa.Column("in_domain", sa.Double))
    op.add_column("generations", sa.Column("in_domain_ok", sa.Boolean))
    op.create_table(
        "latent_segments",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("generation_id", sa.Uuid, nullable=False),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("start_seconds", sa.Double, nullable=False),
        sa.Column("end_seconds", sa.Double, nullable=False),
        sa.Column("in_domain", sa.Double),
        sa.Column("embedding", Vector(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            ondelete="CASCADE",
            name="fk_latent_segments_generation_id_generations",
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_latent_segments_model_id_models"),
        sa.UniqueConstraint(
            "generation_id", "model_id", "start_seconds", name="uq_latent_segments_generation_id_model_id_start_seconds"
        ),
        sa.CheckConstraint("end_seconds > start_seconds AND start_seconds >= 0", name="ck_latent_segments_window"),
        sa.PrimaryKeyConstraint("id", name="pk_latent_segments"),
    )
    op.create_index("ix_latent_segments_model_id", "latent_segments", ["model_id"])
    op.create_index(
        "ix_latent_segments_embedding_hnsw",
        "latent_segments",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 64},
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )


def downgrade() -> None:
    op.drop_table("latent_segments")
    op.drop_column("generations", "in_domain_ok")
    op.drop_column("generations", "in_domain")

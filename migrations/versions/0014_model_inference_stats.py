"""Per-model inference statistics in the registry: calls, latency and memory per model version and operation.

Revision ID: 0014_model_inference_stats
Revises: 0013_search_storage
Create Date: 2026-11-29

One row per (model, operation): ``load`` (building the model from its checkpoint), ``generate`` (a job's batched
synthesis: generate/variants/transfer and decode), ``encode`` (re-encodes and imports) and ``inference`` (a call
its caller did not name). Every process that runs models (workers, ``serve`` with its in-process worker, the
CLI) tallies its calls in memory and adds them to the row at the end of each job (or every minute): counts and
sums add up across processes, ``max_seconds`` and the memory columns keep the largest value seen, and
``latency_buckets`` holds a latency histogram over fixed bounds (``service.domain.models.inference_stats``,
which must not change them without a migration), from which the registry estimates p50/p95.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from service.db.schema.models import INFERENCE_OPERATIONS, one_of

revision: str = "0014_model_inference_stats"
down_revision: str | None = "0013_search_storage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    counter = {"nullable": False, "server_default": sa.text("0")}
    op.create_table(
        "model_inference_stats",
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("calls", sa.BigInteger, **counter),
        sa.Column("items", sa.BigInteger, **counter),
        sa.Column("errors", sa.BigInteger, **counter),
        sa.Column("total_seconds", sa.Double, **counter),
        sa.Column("max_seconds", sa.Double, **counter),
        sa.Column("latency_buckets", postgresql.ARRAY(sa.BigInteger), nullable=False),
        sa.Column("peak_rss_bytes", sa.BigInteger),
        sa.Column("rss_growth_bytes", sa.BigInteger),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "operation", name="pk_model_inference_stats"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_inference_stats_model_id_models", ondelete="CASCADE"
        ),
        sa.CheckConstraint(one_of("operation", INFERENCE_OPERATIONS), name="ck_model_inference_stats_operation"),
    )


def downgrade() -> None:
    op.drop_table("model_inference_stats")

"""HNSW indexes over the latents in half precision: ``(embedding::halfvec(512)) halfvec_cosine_ops``.

Revision ID: 0015_halfvec_hnsw
Revises: 0014_model_inference_stats
Create Date: 2026-11-29

Issue 17 (a million latents): at 100,000 latents the half-precision index is half the size of the ``vector`` one
(1.27 vs 2.54 GB per million) at the same recall@10 (0.978 vs 0.968) and slightly faster (docs/performance.md).
The columns stay ``vector(512)``: the reported distances, the exact filtered path, re-ranking, exports and the
FAISS mirror read the full-precision latents; only the graph is built over ``embedding::halfvec(512)``, and the
index scans order by that expression (``service.db.schema.models.half_precision``).

Upgrade builds each new index, then drops the full-precision one. An index of that name already built by hand
(``CREATE INDEX CONCURRENTLY``, without downtime, as docs/performance.md describes) is kept when it is valid and
rebuilt when a failed concurrent build left it invalid. On an existing catalogue the build takes time (the
table is write-locked meanwhile) and ``maintenance_work_mem`` should hold the graph (about 1.3 GB per million
latents). Downgrade builds the ``vector`` indexes again and drops the half-precision ones.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.db.schema.models import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    LATENT_DIM,
    LATENT_HNSW_INDEX,
    SEGMENT_HNSW_INDEX,
)
from service.errors import DatabaseError

revision: str = "0015_halfvec_hnsw"
down_revision: str | None = "0014_model_inference_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> (the full-precision index of 0001/0010, the half-precision index of this revision)
INDEXES = {
    "latent_embeddings": ("ix_latent_embeddings_embedding_hnsw", LATENT_HNSW_INDEX),
    "latent_segments": ("ix_latent_segments_embedding_hnsw", SEGMENT_HNSW_INDEX),
}
WITH = f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"


def upgrade() -> None:
    for table, (full, half) in INDEXES.items():
        drop_if_invalid(half)
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {half} ON {table} USING hnsw "
            f"((embedding::halfvec({LATENT_DIM})) halfvec_cosine_ops) {WITH}"
        )
        check_definition(half, f"halfvec({LATENT_DIM})) halfvec_cosine_ops")
        op.execute(f"DROP INDEX IF EXISTS {full}")


def downgrade() -> None:
    for table, (full, half) in INDEXES.items():
        drop_if_invalid(full)
        op.execute(f"CREATE INDEX IF NOT EXISTS {full} ON {table} USING hnsw (embedding vector_cosine_ops) {WITH}")
        check_definition(full, "(embedding vector_cosine_ops)")
        op.execute(f"DROP INDEX IF EXISTS {half}")


def drop_if_invalid(index: str) -> None:
    """A ``CREATE INDEX CONCURRENTLY`` that failed leaves its index behind, marked invalid (never used by the
    planner): ``IF NOT EXISTS`` would keep it, so it goes first."""
    invalid = (
        op.get_bind()
        .execute(
            sa.text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:index)"),
            {"index": index},
        )
        .scalar()
    )
    if invalid:
        op.execute(f"DROP INDEX {index}")


def check_definition(index: str, expected: str) -> None:
    """An index of that name built by hand must be the one this revision would build (else its searches would
    not use it, or use a graph built otherwise)."""
    definition = op.get_bind().execute(sa.text("SELECT pg_get_indexdef(to_regclass(:index))"), {"index": index})
    found = definition.scalar()
    if expected not in found or "USING hnsw" not in found:
        raise DatabaseError(
            f"index {index} exists but is not the one revision {revision} builds ({found}); drop it and migrate again"
        )

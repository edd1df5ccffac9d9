"""Search storage: latents kept in their table rows, and a tag index without a pending list.

Revision ID: 0013_search_storage
Revises: 0012_presets
Create Date: 2026-11-29

A filtered search reads the latent of every candidate (docs/performance.md). pgvector stores a ``vector`` with
EXTERNAL storage, so a 512-float latent (2 KB, over PostgreSQL's 2 KB TOAST threshold) lives out of line: each
read is a TOAST index probe plus two chunk pages. MAIN storage keeps it in the row (it only leaves the row when
the row would not fit a page), so the read is the row the latent's index probe already fetched. Rows written
before this revision keep their out-of-line latents until the table is rewritten (``VACUUM FULL
latent_embeddings``, which moves them into the rows; it locks the table while it runs).

The GIN index on ``generations.tags`` is switched to ``fastupdate = off``: with the pending list on, every tag
lookup also scanned the unsorted list of recent insertions (up to 4 MB) until a vacuum merged it, which cost
a filtered search more than the rest of its candidate lookup; one generation's few tags are cheap to insert
directly. The pending list is merged here.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_search_storage"
down_revision: str | None = "0012_presets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE latent_embeddings ALTER COLUMN embedding SET STORAGE MAIN")
    op.execute("ALTER INDEX ix_generations_tags SET (fastupdate = off)")
    op.execute("SELECT gin_clean_pending_list('ix_generations_tags')")


def downgrade() -> None:
    op.execute("ALTER INDEX ix_generations_tags RESET (fastupdate)")
    op.execute("ALTER TABLE latent_embeddings ALTER COLUMN embedding SET STORAGE EXTERNAL")

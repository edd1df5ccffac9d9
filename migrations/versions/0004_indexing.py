"""Indexing: the latent change log (written by triggers) and offline clustering runs written back.

Revision ID: 0004_indexing
Revises: 0002_jobs
Create Date: 2026-11-22

Change tracking (see docs/indexing.md): statement-level triggers on ``latent_embeddings`` (insert, update,
delete) and on ``generations`` (updates that change ``deleted_at`` / ``archived_at``) append the affected
latent ids to ``latent_changes`` in the writer's own transaction, stamped with that transaction's id
(``pg_current_xact_id()``). The FAISS mirror keeps a watermark equal to the ``xmin`` of the snapshot it last
read; every transaction below it had finished, so re-reading the log from that xid misses nothing.
"""

from collections.abc import Sequence

import pgvector.sqlalchemy
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_indexing"
down_revision: str | None = "0002_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LATENT_DIM = 512
TIMESTAMPTZ = sa.DateTime(timezone=True)
CURRENT_XID = sa.text("(pg_current_xact_id()::text)::bigint")

LOG_LATENT_CHANGES = """
CREATE FUNCTION indexing_log_latent_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO latent_changes (latent_id, model_id) SELECT id, model_id FROM new_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO latent_changes (latent_id, model_id)
        SELECT id, model_id FROM new_rows
        UNION
        SELECT o.id, o.model_id FROM old_rows o JOIN new_rows n USING (id) WHERE o.model_id <> n.model_id;
    ELSE
        INSERT INTO latent_changes (latent_id, model_id) SELECT id, model_id FROM old_rows;
    END IF;
    RETURN NULL;
END
$$
"""

LOG_GENERATION_CHANGES = """
CREATE FUNCTION indexing_log_generation_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO latent_changes (latent_id, model_id)
    SELECT l.id, l.model_id
    FROM new_rows n JOIN old_rows o USING (id) JOIN latent_embeddings l ON l.generation_id = n.id
    WHERE n.deleted_at IS DISTINCT FROM o.deleted_at OR n.archived_at IS DISTINCT FROM o.archived_at;
    RETURN NULL;
END
$$
"""

LATENT_TRIGGERS = {
    "INSERT": "REFERENCING NEW TABLE AS new_rows",
    "UPDATE": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "DELETE": "REFERENCING OLD TABLE AS old_rows",
}


def upgrade() -> None:
    op.create_table(
        "latent_changes",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("latent_id", sa.BigInteger, nullable=False),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("xid", sa.BigInteger, server_default=CURRENT_XID, nullable=False),
        sa.Column("changed_at", TIMESTAMPTZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_latent_changes"),
    )
    op.create_index("ix_latent_changes_model_id_xid", "latent_changes", ["model_id", "xid"])
    op.create_table(
        "latent_change_pruning",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("pruned_below", sa.BigInteger, nullable=False),
        sa.Column("pruned_at", TIMESTAMPTZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_latent_change_pruning"),
        sa.CheckConstraint("id = 1", name="ck_latent_change_pruning_single_row"),
    )
    op.execute(LOG_LATENT_CHANGES)
    op.execute(LOG_GENERATION_CHANGES)
    for event, referencing in LATENT_TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER latent_embeddings_log_{event.lower()} AFTER {event} ON latent_embeddings {referencing} "
            "FOR EACH STATEMENT EXECUTE FUNCTION indexing_log_latent_changes()"
        )
    op.execute(
        "CREATE TRIGGER generations_log_latent_changes AFTER UPDATE ON generations "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION indexing_log_generation_changes()"
    )

    op.create_table(
        "cluster_runs",
        sa.Column("id", sa.Integer, sa.Identity(), nullable=False),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("k", sa.Integer, nullable=False),
        sa.Column("niter", sa.Integer, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("params", postgresql.JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("n_points", sa.Integer, nullable=False),
        sa.Column("inertia", sa.Double, nullable=False),
        sa.Column("sizes", postgresql.ARRAY(sa.Integer), nullable=False),
        sa.Column("mirror_watermark", sa.BigInteger, nullable=False),
        sa.Column("duration_seconds", sa.Double, nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cluster_runs"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], ondelete="CASCADE", name="fk_cluster_runs_model_id_models"
        ),
        sa.CheckConstraint("k > 0", name="ck_cluster_runs_k_positive"),
    )
    op.create_index("ix_cluster_runs_model_id_id", "cluster_runs", ["model_id", "id"])
    op.create_table(
        "clusters",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("centroid", pgvector.sqlalchemy.Vector(LATENT_DIM), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_clusters"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["cluster_runs.id"], ondelete="CASCADE", name="fk_clusters_run_id_cluster_runs"
        ),
        sa.UniqueConstraint("run_id", "label", name="uq_clusters_run_id_label"),
    )
    op.create_table(
        "cluster_assignments",
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("latent_id", sa.BigInteger, nullable=False),
        sa.Column("cluster_id", sa.BigInteger, nullable=False),
        sa.Column("score", sa.REAL, nullable=False),
        sa.Column("x", sa.REAL, nullable=False),
        sa.Column("y", sa.REAL, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "latent_id", name="pk_cluster_assignments"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["cluster_runs.id"], ondelete="CASCADE", name="fk_cluster_assignments_run_id_cluster_runs"
        ),
        sa.ForeignKeyConstraint(
            ["latent_id"],
            ["latent_embeddings.id"],
            ondelete="CASCADE",
            name="fk_cluster_assignments_latent_id_latent_embeddings",
        ),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], ondelete="CASCADE", name="fk_cluster_assignments_cluster_id_clusters"
        ),
    )
    op.create_index("ix_cluster_assignments_cluster_id_latent_id", "cluster_assignments", ["cluster_id", "latent_id"])
    op.create_index("ix_cluster_assignments_latent_id", "cluster_assignments", ["latent_id"])


def downgrade() -> None:
    for table in ("cluster_assignments", "clusters", "cluster_runs"):
        op.drop_table(table)
    op.execute("DROP TRIGGER generations_log_latent_changes ON generations")
    for event in LATENT_TRIGGERS:
        op.execute(f"DROP TRIGGER latent_embeddings_log_{event.lower()} ON latent_embeddings")
    op.execute("DROP FUNCTION indexing_log_generation_changes()")
    op.execute("DROP FUNCTION indexing_log_latent_changes()")
    op.drop_table("latent_change_pruning")
    op.drop_table("latent_changes")

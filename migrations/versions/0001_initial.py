"""Initial schema: pgvector, model registry, generations, latents (HNSW), audio assets, API keys, grants.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import pgvector.sqlalchemy
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from service.db.schema.migration_support import app_role, create_extension_vector, drop_extension_vector_if_ours
from service.db.schema.models import (
    API_KEY_ROLES,
    GENERATION_KINDS,
    GENERATION_STATUSES,
    MODEL_SOURCE_TYPES,
    MODEL_STATUSES,
    VISIBILITIES,
    one_of,
)

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LATENT_DIM = 512
# HNSW build parameters (pgvector defaults; measured here: recall@10 0.990 at ef_search=40 on 100k latents).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64

TIMESTAMPTZ = sa.DateTime(timezone=True)


def _created_at() -> sa.Column:
    return sa.Column("created_at", TIMESTAMPTZ, server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    create_extension_vector()
    _grant_row_access_by_default()

    op.create_table(
        "models",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("source_id", sa.Text, nullable=False),
        sa.Column("alias", sa.Text, nullable=False),
        sa.Column("source_type", sa.Text, nullable=False),
        sa.Column("author_repo", sa.Text),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("config_path", sa.Text),
        sa.Column("checkpoint_path", sa.Text),
        sa.Column("checkpoint_sha256", sa.Text),
        sa.Column("latent_dim", sa.Integer, server_default=sa.text(str(LATENT_DIM)), nullable=False),
        sa.Column("sample_rate", sa.Integer),
        sa.Column("clip_seconds", sa.Double),
        sa.Column("status", sa.Text, server_default=sa.text("'READY'"), nullable=False),
        sa.Column("status_reason", sa.Text),
        sa.Column("is_default", sa.Boolean, server_default=sa.text("false"), nullable=False),
        sa.Column("metadata", postgresql.JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        _created_at(),
        sa.Column("updated_at", TIMESTAMPTZ, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(one_of("source_type", MODEL_SOURCE_TYPES), name="ck_models_source_type"),
        sa.CheckConstraint(one_of("status", MODEL_STATUSES), name="ck_models_status"),
        sa.CheckConstraint("latent_dim > 0", name="ck_models_latent_dim_positive"),
        sa.UniqueConstraint("source_id", name="uq_models_source_id"),
        sa.UniqueConstraint("alias", name="uq_models_alias"),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
    )
    op.create_index(
        "uq_models_single_default",
        "models",
        ["is_default"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )

    op.create_table(
        "generations",
        sa.Column("id", sa.Uuid, server_default=sa.func.gen_random_uuid(), nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, server_default=sa.text("'pending'"), nullable=False),
        sa.Column("params", postgresql.JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("seed", sa.BigInteger),
        sa.Column("parent_id", sa.Uuid),
        sa.Column("neighbor_id", sa.Uuid),
        sa.Column("error", sa.Text),
        sa.Column("visibility", sa.Text, server_default=sa.text("'private'"), nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text), server_default=sa.text("'{}'::text[]"), nullable=False),
        _created_at(),
        sa.Column("started_at", TIMESTAMPTZ),
        sa.Column("finished_at", TIMESTAMPTZ),
        sa.Column("deleted_at", TIMESTAMPTZ),
        sa.Column("archived_at", TIMESTAMPTZ),
        sa.PrimaryKeyConstraint("id", name="pk_generations"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_generations_model_id_models"),
        sa.ForeignKeyConstraint(["parent_id"], ["generations.id"], name="fk_generations_parent_id_generations"),
        sa.ForeignKeyConstraint(["neighbor_id"], ["generations.id"], name="fk_generations_neighbor_id_generations"),
        sa.CheckConstraint(one_of("kind", GENERATION_KINDS), name="ck_generations_kind"),
        sa.CheckConstraint(one_of("status", GENERATION_STATUSES), name="ck_generations_status"),
        sa.CheckConstraint(one_of("visibility", VISIBILITIES), name="ck_generations_visibility"),
    )
    op.create_index("ix_generations_owner_created_at", "generations", ["owner", "created_at"])
    op.create_index("ix_generations_model_id_created_at", "generations", ["model_id", "created_at"])
    op.create_index("ix_generations_tags", "generations", ["tags"], postgresql_using="gin")
    op.create_index("ix_generations_parent_id", "generations", ["parent_id"])

    op.create_table(
        "latent_embeddings",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("generation_id", sa.Uuid, nullable=False),
        sa.Column("model_id", sa.Integer, nullable=False),
        sa.Column("embedding", pgvector.sqlalchemy.Vector(LATENT_DIM), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_latent_embeddings"),
        sa.UniqueConstraint("generation_id", name="uq_latent_embeddings_generation_id"),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            ondelete="CASCADE",
            name="fk_latent_embeddings_generation_id_generations",
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_latent_embeddings_model_id_models"),
    )
    op.create_index("ix_latent_embeddings_model_id", "latent_embeddings", ["model_id"])
    op.create_index(
        "ix_latent_embeddings_embedding_hnsw",
        "latent_embeddings",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_with={"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )

    op.create_table(
        "audio_assets",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("generation_id", sa.Uuid, nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("sample_rate", sa.Integer, nullable=False),
        sa.Column("duration_seconds", sa.Double, nullable=False),
        sa.Column("format", sa.Text, nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_audio_assets"),
        sa.UniqueConstraint("generation_id", name="uq_audio_assets_generation_id"),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            ondelete="CASCADE",
            name="fk_audio_assets_generation_id_generations",
        ),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, sa.Identity(), nullable=False),
        sa.Column("key_hash", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("label", sa.Text),
        _created_at(),
        sa.Column("revoked_at", TIMESTAMPTZ),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        sa.CheckConstraint(one_of("role", API_KEY_ROLES), name="ck_api_keys_role"),
    )
    op.create_index("ix_api_keys_owner", "api_keys", ["owner"])

    # The app reads the schema version for /ready; it may not write it.
    op.execute(f'GRANT SELECT ON alembic_version TO "{app_role()}"')


def downgrade() -> None:
    op.execute(f'REVOKE ALL ON alembic_version FROM "{app_role()}"')
    for table in ("api_keys", "audio_assets", "latent_embeddings", "generations", "models"):
        op.drop_table(table)
    _revoke_default_row_access()
    drop_extension_vector_if_ours()


def _grant_row_access_by_default() -> None:
    """Every table and sequence the migration owner creates, now or in later revisions, is readable and
    writable by the application role, which gets no DDL rights at all."""
    role = app_role()
    op.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
    op.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{role}"')
    op.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO "{role}"')


def _revoke_default_row_access() -> None:
    role = app_role()
    op.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM "{role}"')
    op.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM "{role}"')
    op.execute(f'REVOKE USAGE ON SCHEMA public FROM "{role}"')

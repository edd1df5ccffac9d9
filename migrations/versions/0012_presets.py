"""Presets and per-owner generation defaults.

Revision ID: 0012_presets
Revises: 0011_webhook_secret_rotation
Create Date: 2026-11-29

``presets``: named prompt + parameter sets ("style templates") of an owner, private or public, unique by
(owner, name). ``generation_defaults``: one row per owner with the fields its generation requests fall back
to. A NULL field is "not set": the next source in line (request, preset, defaults, the model) decides.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.db.schema.models import VISIBILITIES, one_of

revision: str = "0012_presets"
down_revision: str | None = "0011_webhook_secret_rotation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMPTZ = sa.DateTime(timezone=True)


def generation_fields() -> list[sa.Column]:
    return [
        sa.Column("steps", sa.Integer),
        sa.Column("guidance_scale", sa.Double),
        sa.Column("model", sa.Text),
        sa.Column("batch_size", sa.Integer),
    ]


def upgrade() -> None:
    op.create_table(
        "presets",
        sa.Column("id", sa.Uuid, server_default=sa.func.gen_random_uuid(), nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("prompt", sa.Text),
        sa.Column("visibility", sa.Text, server_default=sa.text("'private'"), nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, server_default=sa.func.now(), nullable=False),
        *generation_fields(),
        sa.PrimaryKeyConstraint("id", name="pk_presets"),
        sa.UniqueConstraint("owner", "name", name="uq_presets_owner_name"),
        sa.CheckConstraint(one_of("visibility", VISIBILITIES), name="ck_presets_visibility"),
    )
    op.create_index("ix_presets_visibility_created_at", "presets", ["visibility", "created_at"])
    op.create_table(
        "generation_defaults",
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("visibility", sa.Text),
        sa.Column("updated_at", TIMESTAMPTZ, server_default=sa.func.now(), nullable=False),
        *generation_fields(),
        sa.PrimaryKeyConstraint("owner", name="pk_generation_defaults"),
        sa.CheckConstraint(one_of("visibility", VISIBILITIES), name="ck_generation_defaults_visibility"),
    )


def downgrade() -> None:
    op.drop_table("generation_defaults")
    op.drop_index("ix_presets_visibility_created_at", "presets")
    op.drop_table("presets")

"""Webhook secret rotation: the secret a rotation replaced keeps signing beside the new one until it expires.

Revision ID: 0011_webhook_secret_rotation
Revises: 0010_segments
Create Date: 2026-11-29

``previous_secret`` is the secret before the last rotation and ``previous_secret_expires_at`` when it stops
signing; until then every delivery carries two ``v1`` signatures (the new secret's and the previous one's), so
a receiver can switch to the new secret without refusing a delivery. Both are NULL when there is none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_webhook_secret_rotation"
down_revision: str | None = "0010_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("previous_secret", sa.Text))
    op.add_column("webhooks", sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("webhooks", "previous_secret_expires_at")
    op.drop_column("webhooks", "previous_secret")

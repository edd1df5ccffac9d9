"""Failure classes: why a failed generation failed (bad input, model error, resource exhaustion, infrastructure).

Revision ID: 0007_failure_class
Revises: 0006_events
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_failure_class"
down_revision: str | None = "0006_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLASSES = "failure_class IN ('bad_input', 'model_error', 'resource_exhaustion', 'infrastructure')"


def upgrade() -> None:
    op.add_column("generations", sa.Column("failure_class", sa.Text))
    op.create_check_constraint("ck_generations_failure_class", "generations", CLASSES)


def downgrade() -> None:
    op.drop_constraint("ck_generations_failure_class", "generations", type_="check")
    op.drop_column("generations", "failure_class")

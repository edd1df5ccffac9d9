"""Webhooks: URLs an owner registers, and a delivery log whose rows are queued as jobs by a trigger.

Revision ID: 0009_webhooks
Revises: 0008_reencode
Create Date: 2026-11-29

A statement-level trigger on ``events`` (revision 0006_events) adds one delivery per new event and per live
webhook of the event's owner that subscribes to its type; a trigger on ``webhook_deliveries`` queues one
procrastinate job per new delivery through procrastinate's own ``procrastinate_defer_jobs_v1``, so the event,
its deliveries and their jobs commit together or not at all (nothing is lost between them, nothing is sent
for a transaction that rolled back). A test-fire is a delivery inserted by the API, queued the same way.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_webhooks"
down_revision: str | None = "0008_reencode"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMPTZ = sa.DateTime(timezone=True)

FAN_OUT = """
CREATE FUNCTION webhooks_fan_out_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_id, type, payload)
    SELECT w.id, e.id, e.type, e.data || jsonb_build_object('event_id', e.id, 'at', e.created_at)
    FROM new_rows e JOIN webhooks w ON w.owner = e.owner AND w.deleted_at IS NULL AND e.type = ANY (w.event_types)
    ORDER BY e.id, w.id;
    RETURN NULL;
END
$$
"""

QUEUE_DELIVERIES = """
CREATE FUNCTION webhooks_queue_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delivery bigint;
BEGIN
    FOR delivery IN SELECT id FROM new_rows ORDER BY id LOOP
        UPDATE webhook_deliveries SET job_id = (procrastinate_defer_jobs_v1(ARRAY[ROW(
            'maintenance', 'soundalike:webhook-deliver', 0, NULL, NULL,
            jsonb_build_object('delivery_id', delivery), NULL)::procrastinate_job_to_defer_v1]))[1]
        WHERE id = delivery;
    END LOOP;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Uuid, server_default=sa.func.gen_random_uuid(), nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("created_at", TIMESTAMPTZ, server_default=sa.func.now(), nullable=False),
        sa.Column("deleted_at", TIMESTAMPTZ),
        sa.PrimaryKeyConstraint("id", name="pk_webhooks"),
    )
    op.create_index("ix_webhooks_owner_created_at", "webhooks", ["owner", "created_at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("webhook_id", sa.Uuid, nullable=False),
        sa.Column("event_id", sa.BigInteger),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column("status", sa.Text, server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer, server_default=sa.text("0"), nullable=False),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("job_id", sa.BigInteger),
        sa.Column("created_at", TIMESTAMPTZ, server_default=sa.func.now(), nullable=False),
        sa.Column("last_attempt_at", TIMESTAMPTZ),
        sa.Column("delivered_at", TIMESTAMPTZ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], ondelete="CASCADE", name="fk_webhook_deliveries_webhook_id_webhooks"
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed', 'cancelled')", name="ck_webhook_deliveries_status"
        ),
        sa.CheckConstraint("type IN ('generation', 'batch', 'ping')", name="ck_webhook_deliveries_type"),
    )
    op.create_index("ix_webhook_deliveries_webhook_id_id", "webhook_deliveries", ["webhook_id", "id"])
    op.execute(FAN_OUT)
    op.execute(QUEUE_DELIVERIES)
    op.execute(
        "CREATE TRIGGER events_webhooks_fan_out AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION webhooks_fan_out_events()"
    )
    op.execute(
        "CREATE TRIGGER webhook_deliveries_queue AFTER INSERT ON webhook_deliveries REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION webhooks_queue_deliveries()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER webhook_deliveries_queue ON webhook_deliveries")
    op.execute("DROP TRIGGER events_webhooks_fan_out ON events")
    op.execute("DROP FUNCTION webhooks_queue_deliveries()")
    op.execute("DROP FUNCTION webhooks_fan_out_events()")
    op.drop_index("ix_webhook_deliveries_webhook_id_id", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhooks_owner_created_at", "webhooks")
    op.drop_table("webhooks")

"""Events: a per-owner log of generation and batch status changes, written by triggers, announced by NOTIFY.

Revision ID: 0006_events
Revises: 0005_search
Create Date: 2026-11-29

Statement-level triggers on ``generations`` (insert, and updates that change ``status``) append one
``generation`` event per changed row and one ``batch`` event (progress counted from the batch's generations)
per touched batch, in the writer's own transaction, then ``pg_notify('soundalike_events', owner)``; the
notification is delivered at commit. Before writing, the trigger takes a transaction-level advisory lock per
owner, so one owner's events commit in id order: a stream that resumes after event N never skips an event
with a smaller id that committed later (see docs/api.md, "Live events").
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_events"
down_revision: str | None = "0005_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOG_EVENTS = """
CREATE FUNCTION events_log_generation_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed uuid[];
    changed_owner text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(id) INTO changed FROM new_rows;
    ELSE
        SELECT array_agg(n.id) INTO changed
        FROM new_rows n JOIN old_rows o USING (id) WHERE n.status IS DISTINCT FROM o.status;
    END IF;
    IF changed IS NULL THEN
        RETURN NULL;
    END IF;
    FOR changed_owner IN SELECT DISTINCT owner FROM generations WHERE id = ANY (changed) ORDER BY owner LOOP
        PERFORM pg_advisory_xact_lock(hashtext('soundalike_events'), hashtext(changed_owner));
    END LOOP;
    INSERT INTO events (owner, type, subject_id, data)
    SELECT g.owner, 'generation', g.id,
           jsonb_build_object('id', g.id, 'status', g.status, 'kind', g.kind, 'tags', g.tags,
                              'batch_id', g.batch_id, 'parent_id', g.parent_id, 'error', g.error)
    FROM generations g WHERE g.id = ANY (changed) ORDER BY g.created_at, g.seed, g.id;
    INSERT INTO events (owner, type, subject_id, data)
    SELECT b.owner, 'batch', b.id, jsonb_build_object(
               'id', b.id, 'status', CASE
                   WHEN b.cancelled_at IS NOT NULL THEN 'cancelled'
                   WHEN s.pending + s.running > 0 THEN CASE WHEN s.pending = b.total THEN 'pending' ELSE 'running' END
                   WHEN s.succeeded = b.total THEN 'succeeded'
                   WHEN s.succeeded = 0 THEN 'failed'
                   ELSE 'partial' END,
               'total', b.total, 'done', s.succeeded, 'failed', s.failed, 'cancelled', s.cancelled,
               'pending', s.pending, 'running', s.running)
    FROM batches b
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE g.status = 'pending') AS pending,
               count(*) FILTER (WHERE g.status = 'running') AS running,
               count(*) FILTER (WHERE g.status = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE g.status = 'failed') AS failed,
               count(*) FILTER (WHERE g.status = 'cancelled') AS cancelled
        FROM generations g WHERE g.batch_id = b.id
    ) s
    WHERE b.id IN (SELECT batch_id FROM generations WHERE id = ANY (changed))
    ORDER BY b.id;
    FOR changed_owner IN SELECT DISTINCT owner FROM generations WHERE id = ANY (changed) LOOP
        PERFORM pg_notify('soundalike_events', changed_owner);
    END LOOP;
    RETURN NULL;
END
$$
"""

TRIGGERS = {
    "insert": "AFTER INSERT ON generations REFERENCING NEW TABLE AS new_rows",
    "update": "AFTER UPDATE ON generations REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
}


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("subject_id", sa.Uuid, nullable=False),
        sa.Column("data", postgresql.JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.CheckConstraint("type IN ('generation', 'batch')", name="ck_events_type"),
    )
    op.create_index("ix_events_owner_id", "events", ["owner", "id"])
    op.create_index("ix_events_created_at", "events", ["created_at"])
    op.execute(LOG_EVENTS)
    for name, timing in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER generations_events_{name} {timing} "
            "FOR EACH STATEMENT EXECUTE FUNCTION events_log_generation_changes()"
        )


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER generations_events_{name} ON generations")
    op.execute("DROP FUNCTION events_log_generation_changes()")
    op.drop_index("ix_events_created_at", "events")
    op.drop_index("ix_events_owner_id", "events")
    op.drop_table("events")

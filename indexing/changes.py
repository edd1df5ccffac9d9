"""Change tracking: which latents to look at again, and the snapshot watermark that makes it sound.

Triggers (migration ``0004_indexing``) append ``(latent_id, model_id, xid)`` to ``latent_changes`` in the
writer's own transaction, ``xid`` being that transaction's id. Sequence values and ``xid`` are both taken
before commit, so neither orders rows by commit time; what does is the reading snapshot's ``xmin``: every
transaction with an id below it has finished (committed or rolled back) when the snapshot is taken, and
every transaction still running, or started later, has an id at or above it.

So a sync reads, in one REPEATABLE READ snapshot S, every change with ``xid >= watermark`` (the previous
snapshot's xmin) and sets the new watermark to ``xmin(S)``. A transaction that was running at the previous
sync has ``xid >= watermark`` and is read now; one still running now has ``xid >= xmin(S)`` and is read
next time. Changes seen twice are harmless: the sync applies each latent's *current* state (present and
live → upsert, otherwise → remove), which is idempotent.

The log is pruned below the oldest watermark of the mirrors synced together; ``latent_change_pruning``
records the horizon, and a mirror whose watermark is older than it rebuilds in full rather than miss
changes.
"""

from __future__ import annotations

import psycopg


def snapshot_xmin(conn: psycopg.Connection) -> int:
    """The xmin of the current transaction's snapshot (call first in a REPEATABLE READ transaction)."""
    return int(conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetchone()[0])


def must_reread_from(watermark: int) -> int:
    """The lowest xid whose changes a sync from ``watermark`` must read (inclusive)."""
    return watermark


def needs_full_rebuild(watermark: int | None, pruned_below: int, xmin: int) -> bool:
    """True when the log cannot replay everything since ``watermark``: no mirror, a log pruned past it, or
    a watermark ahead of the database's own transaction ids (the mirror was read from another server, e.g.
    before a restore into a fresh cluster: its xids mean nothing here)."""
    return watermark is None or watermark < pruned_below or watermark > xmin


def prune_horizon(watermarks: list[int]) -> int | None:
    """Below which xid the log may be pruned once these mirrors are synced: the oldest of their watermarks."""
    return min(watermarks) if watermarks else None


def changed_latent_ids(conn: psycopg.Connection, model_id: int, since_xid: int) -> list[int]:
    rows = conn.execute(
        "SELECT DISTINCT latent_id FROM latent_changes WHERE model_id = %s AND xid >= %s ORDER BY latent_id",
        (model_id, must_reread_from(since_xid)),
    ).fetchall()
    return [r[0] for r in rows]


def pruned_below(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pruned_below FROM latent_change_pruning WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def prune(conn: psycopg.Connection, below: int) -> int:
    """Delete log rows below ``below`` and record the horizon (in the caller's transaction); returns rows deleted."""
    conn.execute(
        "INSERT INTO latent_change_pruning (id, pruned_below) VALUES (1, %s) ON CONFLICT (id) DO UPDATE "
        "SET pruned_below = greatest(latent_change_pruning.pruned_below, excluded.pruned_below), pruned_at = now()",
        (below,),
    )
    return conn.execute("DELETE FROM latent_changes WHERE xid < %s", (below,)).rowcount

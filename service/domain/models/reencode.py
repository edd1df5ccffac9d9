"""Re-encoding a catalogue into another model's space, so a new model does not start with an empty catalogue.

One batch (``batches.kind = 'reencode'``) covers every live item with audio that has a latent in the source
model (archived items too on request). Its items (``reencode_items``) are listed in ONE transaction with the
batch, in chunks of ``chunk_size``; a worker job per chunk re-encodes the stored audio with the target model:

- a chunk is one transaction (``process_chunk``): lock the chunk's pending items (``SKIP LOCKED``) and skip
  those that already have a latent in the target's space, decode their audio blobs, one batched
  ``encode_batch`` per sample rate, binary COPY into ``latent_embeddings`` (``archived_latents`` for archived
  items; a file longer than one model window is analysed on its own and its windows go to ``latent_segments``),
  the items marked done. A worker killed mid-chunk leaves nothing behind; the stalled-job sweep
  retries the job, which redoes the chunk. ``UNIQUE (generation_id, model_id)`` backs the rule that an item
  never gets two latents in one space, however often a chunk runs.
- followers: a re-encode that was not cancelled makes its target *follow* its source: an import into the
  source, and a generation made in it, is encoded in the target's space too (``followers``), in the
  transaction that stores it. An advisory lock per source model orders that transaction against the batch's
  listing, so an item is either listed by the batch or sees the batch and encodes for it: nothing is missed.
- catch-up (``claim_catch_up``): when every listed item is done, items of the source still missing from the
  target (a generation whose follower encode was skipped) join the batch and the same job encodes them.

Search in a model's space sees only items with a latent there; lineage, visibility and tags are untouched.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import soundfile as sf
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from indexing.failpoints import failpoint
from service.db.engine import copy_rows
from service.db.schema.models import LATENT_DIM, Batch, Model, ReencodeItem
from service.domain.access.api_keys import Caller
from service.domain.catalogue import segments
from service.domain.errors import Conflict, InvalidInput, NotFound
from service.domain.models import registry
from service.domain.ports import JobQueue, ModelRunner
from service.storage import BlobStore

KIND = "reencode"
LOCK_SOURCE, LOCK_TARGET = 0x5245_0001, 0x5245_0002  # pg_advisory_xact_lock(class, model id)
ITEM_COUNTS = ("pending", "running", "succeeded", "failed", "cancelled")
LATENT_COLUMNS = (["generation_id", "model_id", "embedding"], ["uuid", "int4", "vector"])

# Items of the source model to re-encode: succeeded, not deleted, with audio, with a latent in the source's space
# (live; archived ones too with include_archived) and none yet in the target's. psycopg parameter style: the
# sync worker path and the async API path (exec_driver_sql) share it.
SCOPE = """
SELECT g.id FROM generations g
WHERE g.status = 'succeeded' AND g.deleted_at IS NULL
  AND EXISTS (SELECT 1 FROM audio_assets a WHERE a.generation_id = g.id)
  AND (EXISTS (SELECT 1 FROM latent_embeddings l WHERE l.generation_id = g.id AND l.model_id = %(source)s)
       OR (%(include_archived)s AND EXISTS (
           SELECT 1 FROM archived_latents l WHERE l.generation_id = g.id AND l.model_id = %(source)s)))
  AND NOT EXISTS (SELECT 1 FROM latent_embeddings l WHERE l.generation_id = g.id AND l.model_id = %(target)s)
  AND NOT EXISTS (SELECT 1 FROM archived_latents l WHERE l.generation_id = g.id AND l.model_id = %(target)s)
"""
LIST_ITEMS = f"""
INSERT INTO reencode_items (batch_id, generation_id, chunk)
SELECT %(batch)s, id, %(first_chunk)s + (row_number() OVER (ORDER BY id) - 1) / %(chunk_size)s
FROM ({SCOPE}) scope
WHERE NOT EXISTS (SELECT 1 FROM reencode_items i WHERE i.batch_id = %(batch)s AND i.generation_id = scope.id)
ORDER BY id LIMIT %(limit)s
"""
FOLLOWERS = """
SELECT DISTINCT m.id FROM batches b JOIN models m ON m.id = (b.params->>'to_model_id')::int
WHERE b.kind = 'reencode' AND b.cancelled_at IS NULL AND (b.params->>'from_model_id')::int = %(model)s
  AND m.status NOT IN ('ARCHIVED', 'FAILED')
ORDER BY m.id
"""
LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(%(class)s::int, %(model)s::int)"
LOCK_EXCLUSIVE = "SELECT pg_advisory_xact_lock(%(class)s::int, %(model)s::int)"
# The chunk's pending items with their audio, locked for this transaction; their generations are share-locked
# so archival or deletion cannot change them half-way through.
CLAIM_CHUNK = """
SELECT i.generation_id, a.uri, g.deleted_at IS NOT NULL, g.archived_at IS NOT NULL,
       EXISTS (SELECT 1 FROM latent_embeddings l WHERE l.generation_id = g.id AND l.model_id = %(target)s)
       OR EXISTS (SELECT 1 FROM archived_latents l WHERE l.generation_id = g.id AND l.model_id = %(target)s)
FROM reencode_items i JOIN generations g ON g.id = i.generation_id
LEFT JOIN audio_assets a ON a.generation_id = i.generation_id
WHERE i.batch_id = %(batch)s AND i.chunk = %(chunk)s AND i.status = 'pending'
ORDER BY i.generation_id
FOR UPDATE OF i SKIP LOCKED
FOR SHARE OF g
"""
LATENT_ID = "SELECT nextval(pg_get_serial_sequence('latent_embeddings', 'id')) FROM generate_series(1, %s)"
FINISH_ITEMS = """
UPDATE reencode_items SET status = u.status, error = u.error, finished_at = now()
FROM unnest(%s::uuid[], %s::text[], %s::text[]) AS u(generation_id, status, error)
WHERE batch_id = %s AND reencode_items.generation_id = u.generation_id
"""


@dataclass(frozen=True)
class ReencodeRequest:
    source: str  # a model reference (alias, source id or id)
    target: str
    include_archived: bool = False


@dataclass
class ChunkReport:
    succeeded: int = 0
    failed: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    cancelled: int = 0

    @property
    def processed(self) -> int:
        return self.succeeded + len(self.failed) + self.cancelled


# -- the batch: create, progress, cancel (API and CLI) --------------------------------------------------------


async def request_reencode(
    session: AsyncSession, jobs: JobQueue, caller: Caller, request: ReencodeRequest, chunk_size: int
) -> Batch:
    """Check the models, list the items and record the batch in one transaction, then queue a job per chunk."""
    target = await registry.find_model(session, request.target)
    if target is None:
        raise NotFound(f"no model {request.target!r}; see `soundalike models list`")
    source = await registry.find_model(session, request.source)
    if source is None:
        raise InvalidInput("from", f"no model {request.source!r} (from); see `soundalike models list`")
    check_pair(source, target)
    await _execute(session, LOCK_EXCLUSIVE, {"class": LOCK_TARGET, "model": target.id})
    await _refuse_second_batch(session, target)
    await _execute(session, LOCK_EXCLUSIVE, {"class": LOCK_SOURCE, "model": source.id})
    params = {
        "from": source.alias,
        "from_model_id": source.id,
        "to": target.alias,
        "to_model_id": target.id,
        "include_archived": request.include_archived,
        "chunk_size": chunk_size,
    }
    batch = Batch(owner=caller.owner, kind=KIND, params=params, total=1)  # total is set from the listing below
    session.add(batch)
    await session.flush()
    listed = await _list_items(session, batch, first_chunk=0, limit=None)
    if listed == 0:
        await session.rollback()
        raise Conflict(
            f"nothing to re-encode: every live item with audio in model {params['from']!r} already has a "
            f"latent in {params['to']!r}"
        )
    batch.total = listed
    batch.params = {**params, "chunks": -(-listed // chunk_size)}
    await session.commit()
    await defer_chunks(session, jobs, batch)
    return batch


def check_pair(source: Model, target: Model) -> None:
    if source.id == target.id:
        raise InvalidInput(
            "from", f"from and the target are the same model ({source.alias!r}); re-encode into another model's space"
        )
    if target.status in (registry.ARCHIVED, registry.FAILED):
        raise Conflict(
            f"the target model {target.alias!r} is {target.status}: it takes no new work "
            f"({target.status_reason or 'unarchive it first'})"
        )
    if not target.checkpoint_path:
        raise Conflict(
            f"the target model {target.alias!r} has no checkpoint to encode with (register its weights "
            "with `soundalike models add`)"
        )
    if target.latent_dim != LATENT_DIM:
        raise Conflict(
            f"the target model {target.alias!r} makes {target.latent_dim}-d latents; the catalogue "
            f"stores {LATENT_DIM}-d ones"
        )


async def _refuse_second_batch(session: AsyncSession, target: Model) -> None:
    """One re-encode into a model at a time (two would encode the same items twice)."""
    for batch in await session.scalars(
        select(Batch).where(
            Batch.kind == KIND, Batch.cancelled_at.is_(None), Batch.params["to_model_id"].as_integer() == target.id
        )
    ):
        if (await item_counts(session, batch.id))["pending"]:
            raise Conflict(f"batch {batch.id} is already re-encoding into {target.alias!r}; wait for it or cancel it")


async def _list_items(session: AsyncSession, batch: Batch, first_chunk: int, limit: int | None) -> int:
    params = batch.params
    result = await _execute(
        session,
        LIST_ITEMS,
        {
            "batch": batch.id,
            "first_chunk": first_chunk,
            "chunk_size": params["chunk_size"],
            "limit": limit,
            "source": params["from_model_id"],
            "target": params["to_model_id"],
            "include_archived": params["include_archived"],
        },
    )
    return result.rowcount


async def _execute(session: AsyncSession, sql: str, params: dict[str, Any]):
    connection = await session.connection()
    return await connection.exec_driver_sql(sql, params)


async def defer_chunks(session: AsyncSession, jobs: JobQueue, batch: Batch) -> None:
    """A job per chunk that still has pending items; marks the batch as queued (the sweep re-queues it if the
    process died between the commit and here; a chunk queued twice is harmless)."""
    chunks = await session.scalars(
        select(ReencodeItem.chunk)
        .where(ReencodeItem.batch_id == batch.id, ReencodeItem.status == "pending")
        .group_by(ReencodeItem.chunk)
        .order_by(ReencodeItem.chunk)
    )
    for chunk in list(chunks):
        await jobs.defer_reencode(batch.id, chunk)
    batch.params = {**batch.params, "queued": True}
    await session.commit()


async def unqueued_batches(session: AsyncSession, older_than_seconds: float) -> list[Batch]:
    """Re-encode batches committed without their jobs (a crash right after the commit)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
    return list(
        await session.scalars(
            select(Batch).where(
                Batch.kind == KIND,
                Batch.cancelled_at.is_(None),
                Batch.params["queued"].is_(None),
                Batch.created_at <= cutoff,
            )
        )
    )


async def item_counts(session: AsyncSession, batch_id: uuid.UUID) -> dict[str, int]:
    counts = dict.fromkeys(ITEM_COUNTS, 0)
    counts.update(
        dict(
            (
                await session.execute(
                    select(ReencodeItem.status, func.count())
                    .where(ReencodeItem.batch_id == batch_id)
                    .group_by(ReencodeItem.status)
                )
            ).all()
        )
    )
    return counts


async def cancel_items(session: AsyncSession, batch: Batch) -> None:
    """Cancel a re-encode: its pending items (a chunk being encoded finishes first: its items are locked)."""
    now = datetime.now(UTC)
    batch.cancelled_at = now
    await session.execute(
        update(ReencodeItem)
        .where(ReencodeItem.batch_id == batch.id, ReencodeItem.status == "pending")
        .values(status="cancelled", finished_at=now, error="the batch was cancelled")
    )
    await session.commit()


# -- imports: the spaces that follow a model ---------------------------------------------------------------------


async def followers(session: AsyncSession, model_id: int) -> list[Model]:
    """The models an import into ``model_id`` must also be encoded in (targets of its re-encodes), read under
    the source's shared advisory lock: call it in the import's final transaction."""
    await _execute(session, LOCK_SHARED, {"class": LOCK_SOURCE, "model": model_id})
    ids = (await _execute(session, FOLLOWERS, {"model": model_id})).scalars().all()
    return list(await session.scalars(select(Model).where(Model.id.in_(ids)).order_by(Model.id))) if ids else []


def followers_sync(conn: psycopg.Connection, model_id: int) -> list[int]:
    """``followers`` for the bulk import's psycopg connection (inside its transaction)."""
    conn.execute(LOCK_SHARED, {"class": LOCK_SOURCE, "model": model_id})
    return [row[0] for row in conn.execute(FOLLOWERS, {"model": model_id})]


# -- the worker's side -------------------------------------------------------------------------------------------


async def run_chunk_job(
    sessions: async_sessionmaker[AsyncSession],
    database_url: str,
    store: BlobStore,
    models: ModelRunner,
    batch_id: uuid.UUID,
    chunk: int,
) -> dict[str, int]:
    """A job: its chunk, then any catch-up chunks, each re-encoded in one transaction by the target model."""
    from service.db.engine import connect_sync

    async with sessions() as session:
        batch = await session.get(Batch, batch_id)
    if batch is None or batch.cancelled_at is not None:
        return {"succeeded": 0, "failed": 0}
    target = batch.params["to_model_id"]
    totals = ChunkReport()

    def work(pipeline, chunk: int) -> ChunkReport:
        with connect_sync(database_url) as conn:
            return process_chunk(conn, store, pipeline, batch_id, chunk, target)

    while chunk is not None:
        report = await _run_or_fail(sessions, models, target, work, batch_id, chunk)
        totals.succeeded += report.succeeded
        totals.failed += report.failed
        if report.processed == 0 and chunk >= batch.params.get("chunks", 0):
            break  # a catch-up chunk another job holds
        async with sessions() as session:
            chunk = await claim_catch_up(session, batch_id)
    return {"succeeded": totals.succeeded, "failed": len(totals.failed)}


async def _run_or_fail(
    sessions: async_sessionmaker[AsyncSession],
    models: ModelRunner,
    target: int,
    work: Callable,
    batch_id: uuid.UUID,
    chunk: int,
) -> ChunkReport:
    """The chunk's work with the target's pipeline; a target that cannot be loaded fails the chunk's items."""
    from service.domain.models.model_cache import ModelLoadError

    try:
        return await models.run(target, lambda pipeline: work(pipeline, chunk), operation="encode")
    except (ModelLoadError, registry.RegistryError) as exc:
        async with sessions() as session:
            await fail_chunk(session, batch_id, chunk, str(exc))
        raise


async def fail_chunk(session: AsyncSession, batch_id: uuid.UUID, chunk: int, reason: str) -> None:
    await session.execute(
        update(ReencodeItem)
        .where(ReencodeItem.batch_id == batch_id, ReencodeItem.chunk == chunk, ReencodeItem.status == "pending")
        .values(status="failed", error=reason, finished_at=datetime.now(UTC))
    )
    await session.commit()


async def claim_catch_up(session: AsyncSession, batch_id: uuid.UUID) -> int | None:
    """When every listed item is done: a chunk of items of the source that appeared since (or an unfinished
    catch-up chunk), added to the batch under the batch's row lock; None when there is nothing left."""
    batch = await session.scalar(select(Batch).where(Batch.id == batch_id).with_for_update())
    if batch is None or batch.cancelled_at is not None:
        return None
    chunks = batch.params["chunks"]
    pending = ReencodeItem.batch_id == batch_id, ReencodeItem.status == "pending"
    if await session.scalar(select(func.count()).where(*pending, ReencodeItem.chunk < chunks)):
        return None  # the jobs of the listed chunks are still at work
    chunk = await session.scalar(select(func.min(ReencodeItem.chunk)).where(*pending))
    if chunk is None:
        chunk = await session.scalar(select(func.max(ReencodeItem.chunk)).where(ReencodeItem.batch_id == batch_id))
        chunk += 1
        added = await _list_items(session, batch, first_chunk=chunk, limit=batch.params["chunk_size"])
        batch.total += added
        chunk = chunk if added else None
    await session.commit()
    return chunk


def process_chunk(
    conn: psycopg.Connection, store: BlobStore, pipeline, batch_id: uuid.UUID, chunk: int, target_id: int
) -> ChunkReport:
    """One transaction: the chunk's pending items re-encoded from their stored audio into ``target_id``'s space.

    The items are locked by this transaction, and an item that already has a latent there is not encoded again,
    so the binary COPY never meets a latent it would duplicate."""
    report = ChunkReport()
    with conn.transaction():
        rows = conn.execute(CLAIM_CHUNK, {"batch": batch_id, "chunk": chunk, "target": target_id}).fetchall()
        todo = [(gid, uri, archived) for gid, uri, deleted, archived, present in rows if not (deleted or present)]
        report.cancelled = sum(1 for row in rows if row[2])
        clips, report.failed = read_clips(store, [(gid, uri) for gid, uri, _ in todo])
        latents, refused, windows = segments.encode_with_windows(pipeline, target_id, clips)
        report.failed += refused
        archived = {gid for gid, _, is_archived in todo if is_archived}
        store_latents(conn, target_id, [(gid, latent, gid in archived) for gid, latent in latents])
        live_windows = [row for row in windows if row[0] not in archived]  # archived items are never searched
        segments.copy_segments(conn, live_windows)
        report.succeeded = len(rows) - report.cancelled - len(report.failed)
        _finish(conn, batch_id, rows, report.failed)
        failpoint("reencode:before-commit")
    return report


def read_clips(
    store: BlobStore, items: list[tuple[uuid.UUID, str | None]]
) -> tuple[list[tuple[uuid.UUID, np.ndarray, int]], list[tuple[uuid.UUID, str]]]:
    """Decode each item's stored audio to mono float32; a missing or unreadable file fails that item only."""
    clips, failed = [], []
    for gid, uri in items:
        if uri is None:
            failed.append((gid, "the item has no audio any more"))
            continue
        try:
            audio, rate = sf.read(io.BytesIO(store.path(uri).read_bytes()), dtype="float32", always_2d=True)
            clips.append((gid, audio.mean(axis=1), int(rate)))
        except (OSError, ValueError, RuntimeError, sf.LibsndfileError) as exc:
            failed.append((gid, f"audio {uri} cannot be read: {exc}"))
    return clips, failed


def store_latents(conn: psycopg.Connection, model_id: int, rows: list[tuple[uuid.UUID, np.ndarray, bool]]) -> None:
    """Binary COPY into ``latent_embeddings``; archived items' latents into ``archived_latents`` (outside the
    HNSW index), with ids from the same sequence so they never clash when an item is archived or restored."""
    live = [(gid, model_id, np.asarray(latent, dtype=np.float32)) for gid, latent, archived in rows if not archived]
    kept = [(gid, model_id, np.asarray(latent, dtype=np.float32)) for gid, latent, archived in rows if archived]
    if live:
        copy_rows(conn, "latent_embeddings", *LATENT_COLUMNS, live)
    if kept:
        ids = [row[0] for row in conn.execute(LATENT_ID, (len(kept),))]
        now = datetime.now(UTC)
        copy_rows(
            conn,
            "archived_latents",
            ["id", *LATENT_COLUMNS[0], "created_at"],
            ["int8", *LATENT_COLUMNS[1], "timestamptz"],
            [(latent_id, *row, now) for latent_id, row in zip(ids, kept, strict=True)],
        )


def _finish(
    conn: psycopg.Connection, batch_id: uuid.UUID, rows: list[tuple], failed: list[tuple[uuid.UUID, str]]
) -> None:
    """Each claimed item's outcome: cancelled (deleted meanwhile), failed (with the reason) or succeeded."""
    outcome = {
        gid: ("cancelled", "deleted during the batch") if deleted else ("succeeded", None)
        for gid, _, deleted, _, _ in rows
    }
    outcome.update((gid, ("failed", reason)) for gid, reason in failed)
    if outcome:
        ids = list(outcome)
        conn.execute(FINISH_ITEMS, (ids, [outcome[i][0] for i in ids], [outcome[i][1] for i in ids], batch_id))

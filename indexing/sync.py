"""Sync: bring a model's FAISS mirror up to date with ``latent_embeddings`` (full or incremental).

Incremental sync reads, in one REPEATABLE READ snapshot, the latents logged since the mirror's watermark
and applies each one's current state (see ``indexing.changes`` for why this misses nothing). Full sync
(first build, ``index rebuild``, or a watermark older than the pruned log) streams every live latent.
Either way the result is written as a new file and committed by the manifest (``indexing.mirror``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from indexing import changes, mirror
from indexing.errors import IndexingError, MirrorCorrupt
from indexing.failpoints import failpoint
from indexing.manifest import Manifest, should_compact, timestamp
from indexing.source import ModelRef, count_live, iter_live_latents, merged, models_with_latents, resolve_model
from service.db.server import urls

log = logging.getLogger(__name__)

READERS = 2  # connections reading a full sync in parallel (same snapshot); the server's encoding is the bottleneck
Progress = Callable[[int], None]  # called with the number of vectors just processed


@dataclass(frozen=True)
class SyncResult:
    model: str
    mode: str  # "full", "incremental" or "unchanged"
    upserted: int
    removed: int
    count: int
    watermark: int
    seconds: float


def connect(url: str) -> psycopg.Connection:
    """An application-role connection for the indexer (pgvector types registered)."""
    conn = psycopg.connect(urls.libpq_url(url), application_name="soundalike-index")
    register_vector(conn)
    return conn


def sync_model(
    url: str,
    index_dir: Path,
    model: ModelRef,
    *,
    full: bool = False,
    progress: Callable[[int], Progress] | None = None,
) -> SyncResult:
    """Sync one model's mirror. ``progress(total)`` returns a callback fed with processed-vector counts."""
    started = time.perf_counter()
    index_dir = Path(index_dir)
    with mirror.locked(index_dir, model.id, exclusive=True), connect(url) as conn:
        _remove_debris(index_dir, model.id)
        current = None if full else mirror.load(index_dir, model.id)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        xmin = changes.snapshot_xmin(conn)
        watermark = current.manifest.watermark if current else None
        if changes.needs_full_rebuild(watermark, changes.pruned_below(conn), xmin):
            if current is not None:
                log.warning(
                    "mirror of %s cannot be replayed from the change log (pruned past its watermark, "
                    "or read from another server): rebuilding in full",
                    model.alias,
                )
            index, upserted = _read_all(conn, url, model, progress)
            removed, mode, built_at = 0, "full", None
        else:
            ids = changes.changed_latent_ids(conn, model.id, watermark)
            index, built_at = current.index, current.manifest.built_at
            live_ids, live_vectors = _apply_changes(conn, model, index, ids, progress)
            upserted, removed = len(live_ids), len(ids) - len(live_ids)
            mode = "incremental" if ids else "unchanged"
        conn.rollback()  # read-only: end the snapshot
        failpoint("sync:after-read")

        count = index.ntotal
        if mode == "unchanged":
            if xmin != watermark:
                mirror.commit_manifest(index_dir, current.manifest.advanced(xmin))
        elif mode == "incremental" and not should_compact(_delta_entries(current, ids, live_ids), count):
            mirror.commit_manifest(
                index_dir, _write_delta(index_dir, current, ids, live_ids, live_vectors, xmin, count)
            )
        else:
            name, digest, size = mirror.write_index(index_dir, model.id, index)
            failpoint("sync:after-index-write")
            manifest = Manifest(
                model_id=model.id,
                model_alias=model.alias,
                index_file=name,
                count=count,
                dim=model.latent_dim,
                watermark=xmin,
                checksum=digest,
                bytes=size,
                built_at=timestamp() if mode == "full" else built_at,
                synced_at=timestamp(),
            )
            mirror.commit_manifest(index_dir, manifest)
    result = SyncResult(model.alias, mode, upserted, removed, count, xmin, time.perf_counter() - started)
    log.info("sync %s: %s, +%d -%d, %d vectors, watermark %d, %.2fs", *_fields(result))
    return result


def _remove_debris(index_dir: Path, model_id: int) -> None:
    """Files a killed writer left behind (temp files, index files no manifest names); never the current one."""
    try:
        manifest = mirror.read_manifest(index_dir, model_id)
    except MirrorCorrupt:
        return  # keep everything for inspection; a rebuild writes a fresh manifest and cleans up then
    for path in mirror.remove_leftovers(index_dir, model_id, keep=manifest.files() if manifest else set()):
        log.info("removed %s (left by an interrupted sync)", path)


def _fields(r: SyncResult) -> tuple:
    return r.model, r.mode, r.upserted, r.removed, r.count, r.watermark, r.seconds


def _read_all(conn: psycopg.Connection, url: str, model: ModelRef, progress) -> tuple[faiss.Index, int]:
    """Every live latent, read by ``READERS`` connections sharing ``conn``'s snapshot (exported/imported)."""
    index = mirror.new_index(model.latent_dim)
    tick = progress(count_live(conn, model.id)) if progress else None
    with ExitStack() as stack:
        sources = [iter_live_latents(conn, model.id, part=(0, READERS) if READERS > 1 else None)]
        if READERS > 1:
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            for part in range(1, READERS):
                other = stack.enter_context(connect(url))
                other.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                other.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                sources.append(iter_live_latents(other, model.id, part=(part, READERS)))
        for ids, vectors in merged(sources):
            faiss.normalize_L2(vectors)
            index.add_with_ids(vectors, ids)
            if tick:
                tick(len(ids))
    return index, index.ntotal


def _apply_changes(
    conn: psycopg.Connection, model: ModelRef, index: faiss.IndexIDMap2, ids: list[int], progress
) -> tuple[np.ndarray, np.ndarray]:
    """Remove every changed id, then add back the ones that are live now: idempotent, order-free.

    Returns the live ids and their (unit) vectors, which the delta file records."""
    empty = np.empty(0, dtype=np.int64), np.empty((0, model.latent_dim), dtype=np.float32)
    if not ids:
        return empty
    tick = progress(len(ids)) if progress else None
    index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))
    batches = []
    for live_ids, vectors in iter_live_latents(conn, model.id, ids=ids):
        faiss.normalize_L2(vectors)
        index.add_with_ids(vectors, live_ids)
        batches.append((live_ids, vectors))
        if tick:
            tick(len(live_ids))
    if not batches:
        return empty
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def _delta_entries(current: mirror.Mirror, ids: list[int], live_ids: np.ndarray) -> int:
    """Size of the delta after this sync: tombstones plus upserted vectors."""
    delta_size = current.delta.ntotal if current.delta is not None else 0
    return len(set(current.manifest.tombstones) | set(ids)) + delta_size + len(live_ids)


def _write_delta(
    index_dir: Path, current: mirror.Mirror, ids: list[int], live_ids, live_vectors, xmin: int, count: int
) -> Manifest:
    """Write the new delta file (old upserts not changed since, plus this sync's live ones); the base stays."""
    delta = mirror.new_index(current.manifest.dim)
    if current.delta is not None and current.delta.ntotal:
        old_ids, old_vectors = mirror.index_ids(current.delta), mirror.index_vectors(current.delta)
        keep = ~np.isin(old_ids, np.asarray(ids, dtype=np.int64))
        delta.add_with_ids(old_vectors[keep], old_ids[keep])
    if len(live_ids):
        delta.add_with_ids(live_vectors, live_ids)
    name, digest, size = mirror.write_index(index_dir, current.manifest.model_id, delta, delta=True)
    failpoint("sync:after-index-write")
    tombstones = tuple(sorted(set(current.manifest.tombstones) | set(ids)))
    return replace(
        current.manifest.advanced(xmin),
        delta_file=name,
        delta_checksum=digest,
        delta_bytes=size,
        tombstones=tombstones,
        count=count,
    )


def read_mirror(url: str, index_dir: Path, model: ModelRef, *, sync_first: bool = True) -> mirror.Mirror:
    """The model's mirror for reading (clustering, near-duplicates, neighbours), synced first by default."""
    if sync_first:
        sync_model(url, index_dir, model)
    with mirror.locked(index_dir, model.id, exclusive=False):
        current = mirror.load(index_dir, model.id)
    if current is None:
        raise IndexingError(
            f"model {model.alias!r} has no mirror yet: run `soundalike index sync --model {model.alias}`"
        )
    return current


def sync_all(
    url: str,
    index_dir: Path,
    *,
    prune: bool = True,
    progress: Callable[[int], Progress] | None = None,
) -> list[SyncResult]:
    """Sync every model that has latents; then prune the change log below the oldest watermark.

    This is what the periodic job calls (``soundalike index sync`` with no ``--model`` does the same).
    """
    with connect(url) as conn:
        models = models_with_latents(conn)
    results = [sync_model(url, index_dir, model, progress=progress) for model in models]
    if prune and results:
        horizon = changes.prune_horizon([r.watermark for r in results])
        with connect(url) as conn:
            deleted = changes.prune(conn, horizon)
            conn.commit()
        log.info("pruned %d change-log rows below xid %d", deleted, horizon)
    return results


def rebuild_all(url: str, index_dir: Path, *, progress: Callable[[int], Progress] | None = None) -> list[SyncResult]:
    """Rebuild every model's mirror from the database, e.g. after a restore (which loads rows without the
    change-log triggers, so only a full rebuild sees them)."""
    with connect(url) as conn:
        models = models_with_latents(conn)
    return [sync_model(url, index_dir, model, full=True, progress=progress) for model in models]


def sync_alias(url: str, index_dir: Path, alias: str, *, full: bool = False, progress=None) -> SyncResult:
    with connect(url) as conn:
        model = resolve_model(conn, alias)
    return sync_model(url, index_dir, model, full=full, progress=progress)

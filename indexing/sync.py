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
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from indexing import changes, mirror
from indexing.errors import MirrorCorrupt
from indexing.failpoints import failpoint
from indexing.manifest import Manifest, timestamp
from indexing.source import ModelRef, count_live, iter_live_latents, models_with_latents, resolve_model
from service.db import urls

log = logging.getLogger(__name__)

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
        if changes.needs_full_rebuild(watermark, changes.pruned_below(conn)):
            if current is not None:
                log.warning("mirror of %s is older than the pruned change log: rebuilding in full", model.alias)
            index, upserted = _read_all(conn, model, progress)
            removed, mode, built_at = 0, "full", timestamp()
        else:
            ids = changes.changed_latent_ids(conn, model.id, watermark)
            index, built_at = current.index, current.manifest.built_at
            upserted, removed = _apply_changes(conn, model, index, ids, progress)
            mode = "incremental" if ids else "unchanged"
        conn.rollback()  # read-only: end the snapshot
        failpoint("sync:after-read")

        if mode == "unchanged":
            if xmin != watermark:
                mirror.commit_manifest(index_dir, current.manifest.advanced(xmin))
            count = index.ntotal
        else:
            name, digest, size = mirror.write_index(index_dir, model.id, index)
            count = index.ntotal
            failpoint("sync:after-index-write")
            manifest = Manifest(
                model_id=model.id, model_alias=model.alias, index_file=name, count=count, dim=model.latent_dim,
                watermark=xmin, checksum=digest, bytes=size, built_at=built_at, synced_at=timestamp(),
            )  # fmt: skip
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
    for path in mirror.remove_leftovers(index_dir, model_id, keep=manifest.index_file if manifest else None):
        log.info("removed %s (left by an interrupted sync)", path)


def _fields(r: SyncResult) -> tuple:
    return r.model, r.mode, r.upserted, r.removed, r.count, r.watermark, r.seconds


def _read_all(conn: psycopg.Connection, model: ModelRef, progress) -> tuple[faiss.Index, int]:
    index = mirror.new_index(model.latent_dim)
    tick = progress(count_live(conn, model.id)) if progress else None
    for ids, vectors in iter_live_latents(conn, model.id):
        faiss.normalize_L2(vectors)
        index.add_with_ids(vectors, ids)
        if tick:
            tick(len(ids))
    return index, index.ntotal


def _apply_changes(
    conn: psycopg.Connection, model: ModelRef, index: faiss.IndexIDMap2, ids: list[int], progress
) -> tuple[int, int]:
    """Remove every changed id, then add back the ones that are live now: idempotent, order-free.

    Returns (upserted, removed): removed counts the changed ids that are not live any more."""
    if not ids:
        return 0, 0
    tick = progress(len(ids)) if progress else None
    index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))
    upserted = 0
    for live_ids, vectors in iter_live_latents(conn, model.id, ids=ids):
        faiss.normalize_L2(vectors)
        index.add_with_ids(vectors, live_ids)
        upserted += len(live_ids)
        if tick:
            tick(len(live_ids))
    return upserted, len(ids) - upserted


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


def sync_alias(url: str, index_dir: Path, alias: str, *, full: bool = False, progress=None) -> SyncResult:
    with connect(url) as conn:
        model = resolve_model(conn, alias)
    return sync_model(url, index_dir, model, full=full, progress=progress)

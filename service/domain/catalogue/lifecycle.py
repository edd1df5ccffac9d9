"""The archival policy, run by a periodic job (and `soundalike lifecycle`).

- **archive**: finished generations older than the retention period leave the HNSW index (their latent moves to
  ``archived_latents``) and their audio moves to the archive area; the rows stay readable, marked archived.
- **purge**: soft-deleted generations lose their latent and audio rows; the row itself stays as a tombstone so
  lineage (parent/neighbour links) keeps pointing somewhere.
- **orphan sweep**: files in the blob store that no row points to (a crash between file and commit, a purge)
  are removed once older than a grace period, so in-flight writes are never touched.

File moves copy first and delete the original only after the commit, so a crash never leaves a row pointing
at a missing file.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import ArchivedLatent, AudioAsset, Generation, LatentEmbedding, LatentSegment
from service.storage import BlobStore

BATCH = 500


@dataclass
class LifecycleReport:
    archived: int = 0
    purged: int = 0
    orphans_removed: int = 0


async def archive_old(session: AsyncSession, store: BlobStore, retention_days: float) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    total = 0
    while ids := list(
        await session.scalars(
            select(Generation.id)
            .where(
                Generation.created_at < cutoff,
                Generation.archived_at.is_(None),
                Generation.deleted_at.is_(None),
                Generation.status == "succeeded",
            )
            .limit(BATCH)
        )
    ):
        await _archive(session, store, ids)
        total += len(ids)
    return total


async def _archive(session: AsyncSession, store: BlobStore, ids: list[uuid.UUID]) -> None:
    assets = list(await session.scalars(select(AudioAsset).where(AudioAsset.generation_id.in_(ids))))
    old_uris = []
    for asset in assets:
        new_uri = store.copy_to_archive(asset.uri)
        if new_uri != asset.uri:
            old_uris.append(asset.uri)
            asset.uri = new_uri
    moved = select(
        LatentEmbedding.id,
        LatentEmbedding.generation_id,
        LatentEmbedding.model_id,
        LatentEmbedding.embedding,
        LatentEmbedding.created_at,
    ).where(LatentEmbedding.generation_id.in_(ids))
    await session.execute(
        insert(ArchivedLatent).from_select(["id", "generation_id", "model_id", "embedding", "created_at"], moved)
    )
    await session.execute(delete(LatentEmbedding).where(LatentEmbedding.generation_id.in_(ids)))
    await session.execute(update(Generation).where(Generation.id.in_(ids)).values(archived_at=datetime.now(UTC)))
    await session.commit()
    await _delete_unreferenced(session, store, old_uris)


async def purge_deleted(session: AsyncSession, grace_days: float = 0) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=grace_days)
    deleted = select(Generation.id).where(Generation.deleted_at.is_not(None), Generation.deleted_at <= cutoff)
    purged = set()
    for table in (AudioAsset, LatentEmbedding, ArchivedLatent, LatentSegment):
        result = await session.execute(
            delete(table).where(table.generation_id.in_(deleted)).returning(table.generation_id)
        )
        purged.update(result.scalars())
    await session.commit()
    return len(purged)


async def sweep_orphans(session: AsyncSession, store: BlobStore, grace_seconds: float) -> int:
    referenced = set(await session.scalars(select(AudioAsset.uri)))
    removed = 0
    for uri in list(store.uris(older_than_seconds=grace_seconds)):
        if uri not in referenced and store.delete(uri):
            removed += 1
    return removed


async def _delete_unreferenced(session: AsyncSession, store: BlobStore, uris: list[str]) -> None:
    """Content addressing means two rows may share a file: delete an old copy only when nothing uses it."""
    if not uris:
        return
    still_used = set(await session.scalars(select(AudioAsset.uri).where(AudioAsset.uri.in_(uris))))
    for uri in set(uris) - still_used:
        store.delete(uri)


async def run_lifecycle(
    session: AsyncSession, store: BlobStore, retention_days: float, orphan_grace_seconds: float
) -> LifecycleReport:
    return LifecycleReport(
        archived=await archive_old(session, store, retention_days),
        purged=await purge_deleted(session),
        orphans_removed=await sweep_orphans(session, store, orphan_grace_seconds),
    )

"""Archiving a model and dropping its latent space, once a re-encode has moved its catalogue elsewhere.

``soundalike models archive OLD`` checks first (``plan``, rolled back: the registry's archive rules, and no item may
be left without a latent in any other space), takes a backup of the whole database, then in one transaction
(``archive_dropping_latents``) archives OLD and deletes every latent of its space: ``latent_embeddings``,
``archived_latents`` and ``latent_segments`` rows with OLD's ``model_id`` (cluster assignments go with them;
the FAISS mirror follows through the change log). The items themselves (rows, audio, tags, lineage) and their
latents in other spaces stay. The model's metadata records what was dropped and where the backup is
(``latents_dropped``), and a search that names the archived model is refused (``ensure_searchable``).
``soundalike models archive --keep-latents`` and ``PATCH /v1/models/{ref}`` archive without dropping anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import Model
from service.domain.errors import InvalidInput
from service.domain.models import registry

DROPPED_KEY = "latents_dropped"
LATENT_TABLES = ("latent_embeddings", "archived_latents", "latent_segments")

# Items with a latent (live or archived) in the model's space and in no other: dropping the space would leave
# them unsearchable, and a re-encode lists only items with a latent in its source, so they could not move later.
STRANDED = """
WITH here AS (
    SELECT generation_id FROM latent_embeddings WHERE model_id = :model
    UNION SELECT generation_id FROM archived_latents WHERE model_id = :model
)
SELECT count(*) FROM here h
WHERE NOT EXISTS (SELECT 1 FROM latent_embeddings l WHERE l.generation_id = h.generation_id AND l.model_id <> :model)
  AND NOT EXISTS (SELECT 1 FROM archived_latents l WHERE l.generation_id = h.generation_id AND l.model_id <> :model)
"""


@dataclass(frozen=True)
class SpaceSize:
    latents: int  # live and archived items' latents
    segments: int

    @property
    def empty(self) -> bool:
        return not (self.latents or self.segments)


async def space_size(session: AsyncSession, model_id: int) -> SpaceSize:
    counts = [
        await session.scalar(text(f"SELECT count(*) FROM {table} WHERE model_id = :model"), {"model": model_id})
        for table in LATENT_TABLES
    ]
    return SpaceSize(latents=counts[0] + counts[1], segments=counts[2])


async def plan(session: AsyncSession, ref: str | int) -> tuple[Model, SpaceSize]:
    """Archive ``ref`` by the registry's rules (not the default, not in use), refuse if an item's only latent is
    in its space, and say what dropping the space removes. Nothing is dropped: the CLI runs this in a
    transaction it rolls back, to check before it takes the backup."""
    row = await registry.archive(session, ref)
    await _refuse_stranded(session, row)
    return row, await space_size(session, row.id)


async def archive_dropping_latents(
    session: AsyncSession, ref: str | int, backup: Path | None
) -> tuple[Model, SpaceSize]:
    """``plan``, then every latent of the space deleted, in the caller's transaction; ``backup`` is where the
    caller saved the database first (recorded in the model's metadata with what was dropped)."""
    row, size = await plan(session, ref)
    for table in LATENT_TABLES:
        await session.execute(text(f"DELETE FROM {table} WHERE model_id = :model"), {"model": row.id})
    if not size.empty:
        dropped = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "latents": size.latents}
        dropped |= {"segments": size.segments, "backup": None if backup is None else str(backup)}
        row.metadata_ = {**row.metadata_, DROPPED_KEY: dropped}
    await session.flush()
    await session.refresh(row)
    return row, size


async def _refuse_stranded(session: AsyncSession, row: Model) -> None:
    stranded = await session.scalar(text(STRANDED), {"model": row.id})
    if stranded:
        raise registry.ModelConflict(
            f"{stranded} items have a latent only in model {row.alias!r}'s space: dropping it would leave them "
            f"unsearchable. Move them first (`soundalike models reencode --from {row.alias} --to NEW`), or archive "
            f"with --keep-latents"
        )


def ensure_searchable(model: Model, field: str = "model") -> Model:
    """A search that names an archived model whose latents were dropped finds nothing there: say so (422)."""
    dropped = model.metadata_.get(DROPPED_KEY) if model.status == registry.ARCHIVED else None
    if dropped:
        raise InvalidInput(
            field,
            f"model {model.alias!r} is archived and its latents were dropped ({dropped.get('at')}): its space "
            "is empty; search another model's space (leave model out for the default's)",
        )
    return model

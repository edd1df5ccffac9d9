"""The worker's side of a generation: claim, synthesise, store the audio, commit — or fail cleanly.

Order of writes: ONE transaction sets the status and inserts the audio-asset and latent rows; the audio files
are stored durably (temp name, fsync, rename) while its statements run, and it commits only once they are
stored, so no row ever points at a missing file. A failure before that commit leaves no rows
(the files, if any, are orphans the lifecycle sweep removes). A retried job (worker killed mid-job)
re-claims rows still ``running`` and redoes them; rows already finished are skipped, so nothing is
produced twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.schema.models import ArchivedLatent, AudioAsset, Generation, LatentEmbedding
from service.domain.catalogue.audio import encode_grouped, read_audio, to_wav
from service.domain.models import reencode, registry
from service.domain.ports import ModelRunner
from service.storage import BlobStore, StoredBlob

log = logging.getLogger(__name__)
T = TypeVar("T")
CLAIMABLE = ("pending", "running")


@dataclass(frozen=True)
class Synthesis:
    latents: np.ndarray  # (n, latent_dim): the searchable global latents
    audio: np.ndarray  # (n, samples)
    sample_rate: int


@dataclass(frozen=True)
class Sources:
    """What the rows are made from, read before the model runs (makers never touch the database or the store):
    the parents' and neighbours' stored latents, and the parents' audio (their melody is re-encoded from it)."""

    latents: dict[uuid.UUID, np.ndarray]
    audio: dict[uuid.UUID, tuple[np.ndarray, int]]


# kind -> function(pipeline, rows, sources) -> joint latents (global + content) in row order.
LatentMakers: dict[str, Callable] = {}


def makes_latents(kind: str):
    def register(function: Callable) -> Callable:
        LatentMakers[kind] = function
        return function

    return register


@makes_latents("text2music")
def _text_to_music(pipeline, rows: list[Generation], sources: Sources) -> np.ndarray:
    first = rows[0].params
    return pipeline.generate(
        [row.params["prompt"] for row in rows],
        [row.seed for row in rows],
        steps=first["steps"],
        guidance_scale=first["guidance_scale"],
    )


@makes_latents("variant")
def _variants(pipeline, rows: list[Generation], sources: Sources) -> np.ndarray:
    """One batched ``variants`` call per parent (and variance/steps), results back in row order."""
    groups: dict[tuple, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault((row.parent_id, row.params["variance"], row.params.get("steps")), []).append(index)
    out = np.empty((len(rows), pipeline.config.joint_dim), dtype=np.float32)
    for (parent_id, variance, steps), indexes in groups.items():
        seeds = [rows[i].seed for i in indexes]
        out[indexes] = pipeline.variants(_parent_joint(pipeline, sources, parent_id), variance, seeds, steps=steps)
    return out


@makes_latents("style_transfer")
def _style_transfer(pipeline, rows: list[Generation], sources: Sources) -> np.ndarray:
    return np.stack(
        [
            pipeline.transfer(
                _parent_joint(pipeline, sources, row.parent_id),
                sources.latents[row.neighbor_id],
                row.params["strength"],
            )
            for row in rows
        ]
    )


def _parent_joint(pipeline, sources: Sources, parent_id: uuid.UUID) -> np.ndarray:
    audio, rate = sources.audio[parent_id]
    return pipeline.encode_joint(audio, rate)


async def produce(
    sessions: async_sessionmaker[AsyncSession], store: BlobStore, models: ModelRunner, generation_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    """Produce the given generations; returns the ids that succeeded. Raises after marking failures.

    The model is RUNNING from the claim's commit to the finish's (or the failure's): the registry bookkeeping
    rides in those transactions instead of two of its own."""
    async with sessions() as session:
        rows = await _claim(session, generation_ids)
        if rows:
            try:
                sources = Sources(await source_latents(session, rows), await parent_audio(session, store, rows))
            except Exception as exc:
                await _fail(session, rows, exc)
                raise
    if not rows:
        return []
    try:
        synthesis = await models.run(
            rows[0].model_id,  # one job's rows share one model
            lambda pipeline: synthesize(pipeline, rows, sources),
            operation="generate",
            items=len(rows),
        )
        async with sessions() as session:
            return await _finish(session, store, models, rows, synthesis)
    except Exception as exc:
        async with sessions() as session:
            await _fail(session, rows, exc)
        raise


async def _model_status(session: AsyncSession, transition, model_id: int) -> None:
    """Registry bookkeeping (RUNNING while any job uses the model) in the caller's transaction; it never fails
    the job itself (a transition that cannot happen changes nothing, so the transaction goes on)."""
    try:
        await transition(session, model_id)
    except registry.RegistryError as exc:
        log.warning("model %s status not updated: %s", model_id, exc)


async def _fail(session: AsyncSession, rows: list[Generation], exc: BaseException) -> None:
    await _mark_failed(session, [row.id for row in rows], describe_error(exc))
    await _model_status(session, registry.mark_idle, rows[0].model_id)
    await session.commit()


async def source_latents(session: AsyncSession, rows: list[Generation]) -> dict[uuid.UUID, np.ndarray]:
    """The latents of the rows' parents and style neighbours, live or archived, in the rows' model's space (a
    source may hold latents in several models' spaces; one job's rows share one model)."""
    wanted = {i for row in rows for i in (row.parent_id, row.neighbor_id) if i is not None}
    found: dict[uuid.UUID, np.ndarray] = {}
    for table in (LatentEmbedding, ArchivedLatent):
        if wanted - found.keys():
            result = await session.execute(
                select(table.generation_id, table.embedding).where(
                    table.generation_id.in_(wanted - found.keys()), table.model_id == rows[0].model_id
                )
            )
            found.update({gid: np.asarray(vector, dtype=np.float32) for gid, vector in result})
    if missing := wanted - found.keys():
        raise ValueError(f"the source generations {sorted(map(str, missing))} have no latent any more")
    return found


async def parent_audio(session: AsyncSession, store: BlobStore, rows: list[Generation]) -> dict:
    """The parents' audio as (samples, sample rate): variants and transfers keep the parent's melody."""
    wanted = {row.parent_id for row in rows if row.parent_id is not None}
    if not wanted:
        return {}
    assets = await session.execute(
        select(AudioAsset.generation_id, AudioAsset.uri).where(AudioAsset.generation_id.in_(wanted))
    )
    found = {gid: await asyncio.to_thread(read_audio, store.path(uri)) for gid, uri in assets}
    if missing := wanted - found.keys():
        raise ValueError(f"the source generations {sorted(map(str, missing))} have no audio any more")
    return found


def synthesize(pipeline, rows: list[Generation], sources: Sources | None = None) -> Synthesis:
    """The model calls, batched: joint latents for every row, then their audio; the global part is stored."""
    kinds = {row.kind for row in rows}
    if len(kinds) != 1 or next(iter(kinds)) not in LatentMakers:
        raise ValueError(f"cannot produce generations of kind {sorted(kinds)} in one batch")
    joint = np.asarray(LatentMakers[rows[0].kind](pipeline, rows, sources or Sources({}, {})), dtype=np.float32)
    if joint.shape != (len(rows), pipeline.config.joint_dim) or not np.isfinite(joint).all():
        raise ValueError(f"model returned latents of shape {joint.shape} with non-finite values or wrong size")
    return Synthesis(
        latents=pipeline.searchable(joint), audio=pipeline.decode(joint), sample_rate=pipeline.config.sample_rate
    )


async def _claim(session: AsyncSession, ids: list[uuid.UUID]) -> list[Generation]:
    result = await session.scalars(
        update(Generation)
        .where(Generation.id.in_(ids), Generation.status.in_(CLAIMABLE), Generation.deleted_at.is_(None))
        .values(status="running", started_at=datetime.now(UTC), error=None)
        .returning(Generation)
    )
    rows = sorted(result.all(), key=lambda row: ids.index(row.id))
    if rows:
        await _model_status(session, registry.mark_running, rows[0].model_id)
    await session.commit()
    return rows


def _addressed_audio(store: BlobStore, synthesis: Synthesis) -> list[tuple[StoredBlob, bytes]]:
    """Each clip as WAV bytes, with the address the store will give it."""
    wavs = [to_wav(clip, synthesis.sample_rate) for clip in synthesis.audio]
    return [(store.address(wav, ".wav"), wav) for wav in wavs]


async def _finish(
    session: AsyncSession, store: BlobStore, models: ModelRunner, rows: list[Generation], synthesis: Synthesis
) -> list[uuid.UUID]:
    """One transaction: status, audio rows and latent rows of every row still running (not cancelled). The clips
    are WAV-encoded and hashed while the status is set, and written while the rows are inserted; it commits once
    the files are durable: a row never points at a missing file (a file whose rows never commit is an orphan the
    lifecycle sweep removes)."""
    async with _alongside(asyncio.to_thread(_addressed_audio, store, synthesis)) as addressing:
        following, finished = await _mark_succeeded(session, models, rows, synthesis)
        audio = await addressing
    async with _alongside(asyncio.to_thread(store.write, audio)) as writing:
        await _insert_outputs(session, rows, synthesis, [blob for blob, _ in audio], following, finished)
        await _model_status(session, registry.mark_idle, rows[0].model_id)
        await writing
    await session.commit()
    return [row.id for row in rows if row.id in finished]


@contextlib.asynccontextmanager
async def _alongside(work: Coroutine[Any, Any, T]) -> AsyncIterator[asyncio.Future[T]]:
    """``work`` runs while the body does; when the body fails, it is waited for (a thread cannot be stopped, and
    the job must not end before it) and its own outcome dropped: the body's error is the one raised."""
    task = asyncio.ensure_future(work)
    try:
        yield task
    except BaseException:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved, so never reported as unhandled
        raise


async def _mark_succeeded(
    session: AsyncSession, models: ModelRunner, rows: list[Generation], synthesis: Synthesis
) -> tuple[list[tuple[int, uuid.UUID, np.ndarray]], set[uuid.UUID]]:
    """Rows still running become succeeded; returns the new clips' latents in the spaces that follow the rows'
    model (``followers``) and the ids of the rows that succeeded."""
    following = await _follower_latents(session, models, rows, synthesis)
    finished = set(
        await session.scalars(
            update(Generation)
            .where(
                Generation.id.in_([r.id for r in rows]), Generation.status == "running", Generation.deleted_at.is_(None)
            )
            .values(status="succeeded", finished_at=datetime.now(UTC))
            .returning(Generation.id)
        )
    )
    return following, finished


async def _insert_outputs(
    session: AsyncSession,
    rows: list[Generation],
    synthesis: Synthesis,
    blobs: list[StoredBlob],
    following: list[tuple[int, uuid.UUID, np.ndarray]],
    finished: set[uuid.UUID],
) -> None:
    """The audio and latent rows of the succeeded rows, in their model's space and in the following ones."""
    duration = synthesis.audio.shape[1] / synthesis.sample_rate
    kept = [item for item in zip(rows, synthesis.latents, blobs, strict=True) if item[0].id in finished]
    assets = [
        {
            "generation_id": row.id,
            "uri": blob.uri,
            "sha256": blob.sha256,
            "bytes": blob.bytes,
            "sample_rate": synthesis.sample_rate,
            "duration_seconds": duration,
            "format": "wav",
        }
        for row, _, blob in kept
    ]
    latents = [{"generation_id": row.id, "model_id": row.model_id, "embedding": latent} for row, latent, _ in kept]
    latents += [
        {"generation_id": generation_id, "model_id": model_id, "embedding": latent}
        for model_id, generation_id, latent in following
        if generation_id in finished
    ]
    if assets:  # bulk inserts: one statement each, no ORM objects (nothing reads them back)
        await session.execute(insert(AudioAsset), assets)
        await session.execute(insert(LatentEmbedding), latents)


async def _follower_latents(
    session: AsyncSession, models: ModelRunner, rows: list[Generation], synthesis: Synthesis
) -> list[tuple[int, uuid.UUID, np.ndarray]]:
    """The new clips encoded by every model that follows the rows' model (the target of a re-encode from it), read
    under the re-encode's advisory lock: a re-encode listing either sees these rows or is seen here. A follower
    that cannot be loaded, or refuses a clip, is logged and skipped: the generation itself still succeeds."""
    from service.domain.models.model_cache import ModelLoadError

    clips = [(row.id, audio, synthesis.sample_rate) for row, audio in zip(rows, synthesis.audio, strict=True)]
    found = []
    for follower in await reencode.followers(session, rows[0].model_id):
        try:
            encoded, refused = await models.run(
                follower.id, lambda pipeline: encode_grouped(pipeline, clips), operation="encode", items=len(clips)
            )
        except (ModelLoadError, registry.RegistryError) as exc:
            log.warning("generations not encoded in the space of model %s, which follows: %s", follower.id, exc)
            continue
        for generation_id, reason in refused:
            log.warning("generation %s not encoded in the space of model %s: %s", generation_id, follower.id, reason)
        found += [(follower.id, generation_id, latent) for generation_id, latent in encoded]
    return found


async def mark_failed(session: AsyncSession, ids: list[uuid.UUID], error: str) -> None:
    await _mark_failed(session, ids, error)
    await session.commit()


async def _mark_failed(session: AsyncSession, ids: list[uuid.UUID], error: str) -> None:
    await session.execute(
        update(Generation)
        .where(Generation.id.in_(ids), Generation.status.in_(CLAIMABLE))
        .values(status="failed", error=error, finished_at=datetime.now(UTC))
    )


def describe_error(exc: BaseException) -> str:
    message = str(exc).strip() or type(exc).__name__
    return message if isinstance(exc, ValueError) else f"{type(exc).__name__}: {message}"


async def pending_without_job(session: AsyncSession, older_than_seconds: float) -> list[list[uuid.UUID]]:
    """Groups of pending generations whose job was never deferred (a crash right after their commit),
    one group per original request (same owner, model and creation transaction)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
    rows = await session.execute(
        select(Generation.id, Generation.owner, Generation.model_id, Generation.created_at)
        .where(
            Generation.status == "pending",
            Generation.job_id.is_(None),
            Generation.deleted_at.is_(None),
            Generation.created_at <= cutoff,
        )
        .order_by(Generation.created_at, Generation.id)
    )
    groups: dict[tuple, list[uuid.UUID]] = {}
    for generation_id, owner, model_id, created_at in rows:
        groups.setdefault((owner, model_id, created_at), []).append(generation_id)
    return list(groups.values())

"""Importing existing audio: decode, check, encode with a model, store as a generation of kind ``import``.

One upload (API) or a folder (CLI, batched). Either way the clip is stored as WAV in the blob store first,
then one transaction writes the generation (with the model's in-domain verdict), its audio row, its latent
and, for a file longer than one model window, its windows' latents (``service.domain.catalogue.segments``), so a
catalogue becomes searchable and a failure leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import soundfile as sf
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.schema.models import AudioAsset, Generation, LatentEmbedding, LatentSegment, Model
from service.domain.access.api_keys import Caller
from service.domain.catalogue import segments
from service.domain.catalogue.audio import to_wav
from service.domain.catalogue.segments import Analysed, InDomain
from service.domain.errors import DomainError, InvalidInput
from service.domain.models import reencode
from service.domain.models.model_lookup import resolve_model
from service.domain.ports import ModelRunner
from service.storage import BlobStore

# The formats uploads, searches by audio and `soundalike import DIR` accept (libsndfile decodes each), with the
# file suffix the folder import looks for.
AUDIO_FORMATS = {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3"}
AUDIO_SUFFIXES = tuple(AUDIO_FORMATS.values())
FORMAT_NAMES = "WAV, FLAC, OGG or MP3"


class PayloadTooLarge(DomainError):
    status = 413


@dataclass(frozen=True)
class DecodedClip:
    audio: np.ndarray  # mono float32
    sample_rate: int
    original_format: str

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


@dataclass(frozen=True)
class ImportOptions:
    model: str | None = None
    visibility: str = "private"
    tags: tuple[str, ...] = ()


def decode_upload(data: bytes, filename: str, max_bytes: int, max_seconds: float) -> DecodedClip:
    """Decode WAV/FLAC/OGG/MP3 bytes; every failure is a clear error naming the ``file`` field."""
    if not data:
        raise InvalidInput("file", f"{filename or 'the upload'} is empty (0 bytes)")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{filename} is {len(data)} bytes; the limit is {max_bytes} bytes")
    _refuse_truncated_wav(data, filename)
    try:
        info = sf.info(io.BytesIO(data))
        audio, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InvalidInput("file", f"{filename} is not a readable {FORMAT_NAMES} file ({_decoder_says(exc)})") from None
    if info.format not in AUDIO_FORMATS:
        raise InvalidInput("file", f"{filename} is {info.format_info}; upload {FORMAT_NAMES}")
    if info.frames == 0 or len(audio) == 0:
        raise InvalidInput("file", f"{filename} holds no audio frames")
    clip = DecodedClip(audio=audio.mean(axis=1), sample_rate=int(sample_rate), original_format=info.format.lower())
    if clip.seconds > max_seconds:
        raise InvalidInput("file", f"{filename} lasts {clip.seconds:.1f} s; the limit is {max_seconds:g} s")
    return clip


def _decoder_says(exc: Exception) -> str:
    """libsndfile's reason without the in-memory file object it was given (``Error opening <_io.BytesIO ...>``)."""
    reason = getattr(exc, "error_string", None) or str(exc).rsplit(": ", 1)[-1]
    return reason.strip().rstrip(".") or type(exc).__name__


def _refuse_truncated_wav(data: bytes, filename: str) -> None:
    """libsndfile reads a cut-off WAV leniently; its RIFF header says how long the file should be."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) >= 12:
        announced = int.from_bytes(data[4:8], "little") + 8
        if announced > len(data):
            raise InvalidInput(
                "file", f"{filename} is truncated: its header announces {announced} bytes, got {len(data)}"
            )


async def import_clip(
    session: AsyncSession,
    store: BlobStore,
    models: ModelRunner,
    caller: Caller,
    clip: DecodedClip,
    filename: str,
    options: ImportOptions,
) -> Generation:
    """Store the clip, its latent, its windows (a file longer than one window) and the model's in-domain verdict
    (speech or noise is stored but flagged); in the spaces of re-encodes from the model too."""
    model = await resolve_model(session, options.model, for_new_work=True)
    result = await analyse_clip(models, model, clip, filename)
    blob = await asyncio.to_thread(lambda: store.put(to_wav(clip.audio, clip.sample_rate), ".wav"))
    row = new_import_row(caller.owner, model, filename, clip, options, result.in_domain)
    session.add(row)
    await session.flush()
    session.add(asset_row(row, blob, clip))
    await add_latents(session, row.id, model.id, result)
    for follower in await reencode.followers(session, model.id):  # a re-encode from this model: its space too
        await add_latents(session, row.id, follower.id, await analyse_clip(models, follower, clip, filename))
    await session.commit()
    return row


async def add_latents(session: AsyncSession, generation_id: uuid.UUID, model_id: int, result: Analysed) -> None:
    session.add(LatentEmbedding(generation_id=generation_id, model_id=model_id, embedding=result.latent))
    if rows := segments.segment_dicts(generation_id, model_id, result):
        await session.execute(insert(LatentSegment), rows)


async def analyse_clip(models: ModelRunner, model: Model, clip: DecodedClip, filename: str) -> Analysed:
    """The clip in ``model``'s space (pooled latent, windows, in-domain verdict), off the event loop; audio the
    model refuses is an error on the ``file`` field."""
    from service.ml.errors import InvalidAudioError

    try:
        return await models.run(
            model.id, lambda pipeline: segments.analyse_with(pipeline, clip.audio, clip.sample_rate, model)
        )
    except InvalidAudioError as exc:  # too short, silent, bad rate: say it of the uploaded file
        raise InvalidInput("file", f"{filename}: {exc.message}") from None


def new_import_row(
    owner: str, model: Model, filename: str, clip: DecodedClip, options: ImportOptions, verdict: InDomain
) -> Generation:
    now = datetime.now(UTC)
    return Generation(
        owner=owner,
        model_id=model.id,
        kind="import",
        status="succeeded",
        visibility=options.visibility,
        tags=list(options.tags),
        started_at=now,
        finished_at=now,
        params=import_params(filename, clip),
        in_domain=verdict.score,
        in_domain_ok=verdict.ok,
    )


def import_params(filename: str, clip: DecodedClip) -> dict:
    return {
        "filename": Path(filename).name,
        "original_format": clip.original_format,
        "original_sample_rate": clip.sample_rate,
        "seconds": round(clip.seconds, 3),
    }


def asset_row(row: Generation, blob, clip: DecodedClip) -> AudioAsset:
    return AudioAsset(
        generation_id=row.id,
        uri=blob.uri,
        sha256=blob.sha256,
        bytes=blob.bytes,
        sample_rate=clip.sample_rate,
        duration_seconds=clip.seconds,
        format="wav",
    )

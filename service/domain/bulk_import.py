"""Importing a folder of audio: batched encodes, blob writes, and binary COPY of the rows, one transaction
per batch. Unreadable or unusable files are skipped and reported, never half-stored."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from service.db.engine import copy_rows
from service.domain.audio import to_wav
from service.domain.errors import DomainError
from service.domain.imports import AUDIO_SUFFIXES, DecodedClip, ImportOptions, decode_upload
from service.storage import BlobStore

GENERATION_COLUMNS = (
    ("id", "uuid"), ("owner", "text"), ("model_id", "int4"), ("kind", "text"), ("status", "text"),
    ("params", "jsonb"), ("visibility", "text"), ("tags", "text[]"), ("created_at", "timestamptz"),
    ("started_at", "timestamptz"), ("finished_at", "timestamptz"),
)  # fmt: skip
ASSET_COLUMNS = (
    ("generation_id", "uuid"), ("uri", "text"), ("sha256", "text"), ("bytes", "int8"), ("sample_rate", "int4"),
    ("duration_seconds", "float8"), ("format", "text"),
)  # fmt: skip
LATENT_COLUMNS = (("generation_id", "uuid"), ("model_id", "int4"), ("embedding", "vector"))


@dataclass
class ImportReport:
    imported: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


@dataclass(frozen=True)
class Encoded:
    path: Path
    clip: DecodedClip
    latent: np.ndarray


def audio_files(folder: Path) -> list[Path]:
    return [p for p in _files(folder) if p.suffix.lower() in AUDIO_SUFFIXES]


def ignored_files(folder: Path) -> list[Path]:
    """Files under ``folder`` the import leaves alone (not one of the accepted suffixes), to be listed."""
    return [p for p in _files(folder) if p.suffix.lower() not in AUDIO_SUFFIXES]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


def import_folder(conn: psycopg.Connection, store: BlobStore, pipeline, model_id: int, owner: str,
                  files: list[Path], options: ImportOptions, limits, batch_size: int = 32,
                  on_batch: Callable[[int], None] = lambda n: None) -> ImportReport:  # fmt: skip
    report = ImportReport()
    for batch in _chunks(files, batch_size):
        decoded = _decode(batch, limits, report)
        encoded = _encode(pipeline, decoded, report)
        if encoded:
            _store(conn, store, encoded, model_id, owner, options)
            report.imported += len(encoded)
        on_batch(len(batch))
    return report


def _chunks(items: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _decode(paths: list[Path], limits, report: ImportReport) -> list[tuple[Path, DecodedClip]]:
    decoded = []
    for path in paths:
        try:
            decoded.append((path, decode_upload(path.read_bytes(), path.name, limits.max_upload_bytes,
                                                limits.max_upload_seconds)))  # fmt: skip
        except (DomainError, OSError) as exc:
            report.skipped.append((str(path), getattr(exc, "message", str(exc))))
    return decoded


def _encode(pipeline, decoded: list[tuple[Path, DecodedClip]], report: ImportReport) -> list[Encoded]:
    """One batched encode per sample rate; a batch that fails is retried clip by clip to isolate the bad ones."""
    from service.ml.errors import ModelInputError

    by_rate: dict[int, list[tuple[Path, DecodedClip]]] = defaultdict(list)
    for path, clip in decoded:
        by_rate[clip.sample_rate].append((path, clip))
    encoded = []
    for rate, group in by_rate.items():
        try:
            latents = pipeline.encode_batch([clip.audio for _, clip in group], rate)
            encoded.extend(Encoded(path, clip, latent) for (path, clip), latent in zip(group, latents, strict=True))
        except ModelInputError:
            for path, clip in group:
                try:
                    encoded.append(Encoded(path, clip, pipeline.encode(clip.audio, rate)))
                except ModelInputError as exc:
                    report.skipped.append((str(path), exc.message))
    return encoded


def _store(conn: psycopg.Connection, store: BlobStore, encoded: list[Encoded], model_id: int, owner: str,
           options: ImportOptions) -> None:  # fmt: skip
    blobs = [store.put(to_wav(item.clip.audio, item.clip.sample_rate), ".wav") for item in encoded]
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in encoded]
    generations = [
        (gid, owner, model_id, "import", "succeeded",
         Jsonb({"filename": item.path.name, "original_format": item.clip.original_format,
                "original_sample_rate": item.clip.sample_rate, "seconds": round(item.clip.seconds, 3)}),
         options.visibility, list(options.tags), now, now, now)
        for gid, item in zip(ids, encoded, strict=True)
    ]  # fmt: skip
    assets = [
        (gid, blob.uri, blob.sha256, blob.bytes, item.clip.sample_rate, item.clip.seconds, "wav")
        for gid, blob, item in zip(ids, blobs, encoded, strict=True)
    ]
    latents = [(gid, model_id, item.latent) for gid, item in zip(ids, encoded, strict=True)]
    with conn.transaction():
        _copy(conn, "generations", GENERATION_COLUMNS, generations)
        _copy(conn, "audio_assets", ASSET_COLUMNS, assets)
        _copy(conn, "latent_embeddings", LATENT_COLUMNS, latents)


def _copy(conn: psycopg.Connection, table: str, columns: tuple[tuple[str, str], ...], rows: list[tuple]) -> None:
    copy_rows(conn, table, [name for name, _ in columns], [kind for _, kind in columns], rows)

"""Importing a folder of audio: encodes, blob writes, and binary COPY of the rows, one transaction per batch.
Each file is analysed (pooled latent, windows, in-domain verdict: ``service.domain.catalogue.segments``); a file longer
than one model window also gets its windows' latents. Unreadable or unusable files are skipped and reported,
never half-stored."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from service.db.engine import copy_rows
from service.domain.catalogue import segments
from service.domain.catalogue.audio import to_wav
from service.domain.catalogue.imports import AUDIO_SUFFIXES, DecodedClip, ImportOptions, decode_upload, import_params
from service.domain.catalogue.segments import Analysed
from service.domain.errors import DomainError
from service.domain.models import reencode, registry
from service.storage import BlobStore

GENERATION_COLUMNS = (
    ("id", "uuid"),
    ("owner", "text"),
    ("model_id", "int4"),
    ("kind", "text"),
    ("status", "text"),
    ("params", "jsonb"),
    ("visibility", "text"),
    ("tags", "text[]"),
    ("created_at", "timestamptz"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("in_domain", "float8"),
    ("in_domain_ok", "bool"),
)
ASSET_COLUMNS = (
    ("generation_id", "uuid"),
    ("uri", "text"),
    ("sha256", "text"),
    ("bytes", "int8"),
    ("sample_rate", "int4"),
    ("duration_seconds", "float8"),
    ("format", "text"),
)
LATENT_COLUMNS = (("generation_id", "uuid"), ("model_id", "int4"), ("embedding", "vector"))


@dataclass
class ImportReport:
    imported: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    flagged: list[str] = field(default_factory=list)  # stored, but not music to the model (in_domain_ok false)


@dataclass(frozen=True)
class Encoded:
    path: Path
    clip: DecodedClip
    result: Analysed

    @property
    def latent(self) -> np.ndarray:
        return self.result.latent


def audio_files(folder: Path) -> list[Path]:
    return [p for p in _files(folder) if p.suffix.lower() in AUDIO_SUFFIXES]


def ignored_files(folder: Path) -> list[Path]:
    """Files under ``folder`` the import leaves alone (not one of the accepted suffixes), to be listed."""
    return [p for p in _files(folder) if p.suffix.lower() not in AUDIO_SUFFIXES]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


def import_folder(
    conn: psycopg.Connection,
    store: BlobStore,
    pipeline,
    model_id: int,
    owner: str,
    files: list[Path],
    options: ImportOptions,
    limits,
    batch_size: int = 32,
    on_batch: Callable[[int], None] = lambda n: None,
    followers: Callable[[int], Any] | None = None,
) -> ImportReport:
    """``followers(model_id)``: the pipeline of a re-encode target of ``model_id`` (default: loaded from the
    registry's checkpoint, hash checked), for items that must land in its space too.

    Each batch commits its own transaction, so ``conn`` must not be inside one: a transaction around the whole
    import would hide every batch until the end and hold the import's locks all along (the re-encode lock of
    ``model_id``, the owner's events lock), so a re-encode or a generation of the owner started meanwhile waits
    for the last file."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ValueError("import_folder commits a transaction per batch: call it outside a transaction")
    report = ImportReport()
    followers = followers or FollowerPipelines(conn)
    with conn.transaction():  # a read outside one would open the transaction every batch then nests in
        metadata = model_metadata(conn, model_id)
    for batch in _chunks(files, batch_size):
        decoded = _decode(batch, limits, report)
        encoded = _encode(pipeline, metadata, decoded, report)
        if encoded:
            _store(conn, store, encoded, model_id, owner, options, followers)
            report.imported += len(encoded)
            report.flagged += [str(item.path) for item in encoded if not item.result.in_domain.ok]
        on_batch(len(batch))
    return report


class FollowerPipelines:
    """Pipelines of re-encode targets, loaded once each, their checkpoint hash checked against the registry."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.loaded: dict[int, Any] = {}

    def __call__(self, model_id: int) -> Any:
        if model_id not in self.loaded:
            from service.ml.pipeline import Pipeline

            path, sha256 = self.conn.execute(
                "SELECT checkpoint_path, checkpoint_sha256 FROM models WHERE id = %s", (model_id,)
            ).fetchone()
            if problem := registry.checkpoint_problem(path, sha256):
                raise ValueError(f"model {model_id} (a re-encode target) cannot be loaded: {problem}")
            self.loaded[model_id] = Pipeline.load(path)
        return self.loaded[model_id]


def model_metadata(conn: psycopg.Connection, model_id: int) -> dict:
    """The registry's metadata of a model (its recorded in-domain threshold among it)."""
    row = conn.execute("SELECT metadata FROM models WHERE id = %s", (model_id,)).fetchone()
    return row[0] if row else {}


def _chunks(items: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _decode(paths: list[Path], limits, report: ImportReport) -> list[tuple[Path, DecodedClip]]:
    decoded = []
    for path in paths:
        try:
            decoded.append(
                (path, decode_upload(path.read_bytes(), path.name, limits.max_upload_bytes, limits.max_upload_seconds))
            )
        except (DomainError, OSError) as exc:
            report.skipped.append((str(path), getattr(exc, "message", str(exc))))
    return decoded


def _encode(pipeline, metadata: dict, decoded: list[tuple[Path, DecodedClip]], report: ImportReport) -> list[Encoded]:
    """The batch's files analysed together (their windows batched through the encoder); a file the model refuses
    is skipped."""
    analyses = pipeline.analyse_many([(clip.audio, clip.sample_rate) for _, clip in decoded])
    encoded = []
    for (path, clip), analysis in zip(decoded, analyses, strict=True):
        if isinstance(analysis, Exception):
            report.skipped.append((str(path), analysis.message))
            continue
        encoded.append(Encoded(path, clip, segments.analysed(analysis, pipeline.in_domain_threshold, metadata)))
    return encoded


def _store(
    conn: psycopg.Connection,
    store: BlobStore,
    encoded: list[Encoded],
    model_id: int,
    owner: str,
    options: ImportOptions,
    followers: Callable[[int], Any],
) -> None:
    blobs = store.put_many([to_wav(item.clip.audio, item.clip.sample_rate) for item in encoded], ".wav")
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in encoded]
    generations = [
        _generation_row(gid, owner, model_id, item, options, now) for gid, item in zip(ids, encoded, strict=True)
    ]
    assets = [
        (gid, blob.uri, blob.sha256, blob.bytes, item.clip.sample_rate, item.clip.seconds, "wav")
        for gid, blob, item in zip(ids, blobs, encoded, strict=True)
    ]
    latents, windows = _latent_rows(model_id, ids, [item.result for item in encoded])
    with conn.transaction():
        extra_latents, extra_windows = _follower_latents(conn, model_id, ids, encoded, followers)
        _copy(conn, "generations", GENERATION_COLUMNS, generations)
        _copy(conn, "audio_assets", ASSET_COLUMNS, assets)
        _copy(conn, "latent_embeddings", LATENT_COLUMNS, latents + extra_latents)
        _copy(conn, "latent_segments", segments.SEGMENT_COLUMNS, windows + extra_windows)


def _generation_row(gid: uuid.UUID, owner: str, model_id: int, item: Encoded, options: ImportOptions, now) -> tuple:
    verdict = item.result.in_domain
    params = Jsonb(import_params(item.path.name, item.clip))
    head = (gid, owner, model_id, "import", "succeeded", params, options.visibility, list(options.tags))
    return (*head, now, now, now, verdict.score, verdict.ok)


def _latent_rows(model_id: int, ids: list[uuid.UUID], results: list[Analysed]) -> tuple[list[tuple], list[tuple]]:
    """Rows for ``latent_embeddings`` and ``latent_segments`` of these items in ``model_id``'s space."""
    latents = [(gid, model_id, result.latent) for gid, result in zip(ids, results, strict=True)]
    windows = [
        row for gid, result in zip(ids, results, strict=True) for row in segments.segment_rows(gid, model_id, result)
    ]
    return latents, windows


def _follower_latents(
    conn: psycopg.Connection, model_id: int, ids: list[uuid.UUID], encoded: list[Encoded], followers: Callable
) -> tuple[list[tuple], list[tuple]]:
    """The batch's latents and windows in the spaces of re-encodes from ``model_id`` (read inside the
    transaction, under the re-encode lock: see ``service.domain.models.reencode``); ``followers(model_id)`` loads such a
    model's pipeline. A clip the follower refuses fails the batch (nothing of it is stored)."""
    latents, windows = [], []
    for follower in reencode.followers_sync(conn, model_id):
        pipeline, metadata = followers(follower), model_metadata(conn, follower)
        results = [
            segments.analysed(
                pipeline.analyse(item.clip.audio, item.clip.sample_rate), pipeline.in_domain_threshold, metadata
            )
            for item in encoded
        ]
        more_latents, more_windows = _latent_rows(follower, ids, results)
        latents += more_latents
        windows += more_windows
    return latents, windows


def _copy(conn: psycopg.Connection, table: str, columns: tuple[tuple[str, str], ...], rows: list[tuple]) -> None:
    copy_rows(conn, table, [name for name, _ in columns], [kind for _, kind in columns], rows)

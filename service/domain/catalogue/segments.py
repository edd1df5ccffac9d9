"""Whole tracks and their windows, and the model's "is this music?" verdict.

A file longer than one model window is cut by the encoder into windows (4 s every 2 s for the shipped model);
the pooled latent is the searched vector of the item, and each window's latent is stored as a segment
(``latent_segments``: start, end, vector; one model's space per row) so a search can say which part of which
track sounds like the query. Visibility, deletion and archival come from the item.

The model also scores how much audio sounds like music it knows (``in_domain``, 0-1). The threshold it is
judged against is the model's calibrated one: recorded in the registry as ``metadata.in_domain_threshold``
when the model is registered (taken from the checkpoint), else the checkpoint's own value. An import below it
(speech, noise) is stored but flagged (``generations.in_domain_ok`` false); search can leave flagged items out.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.db.schema.models import Model

THRESHOLD_KEY = "in_domain_threshold"  # in the registry's model metadata
SEGMENT_COLUMNS = (
    ("generation_id", "uuid"),
    ("model_id", "int4"),
    ("start_seconds", "float8"),
    ("end_seconds", "float8"),
    ("in_domain", "float8"),
    ("embedding", "vector"),
)


@dataclass(frozen=True)
class InDomain:
    """How much the audio sounds like music the model knows, against the model's calibrated threshold."""

    score: float
    threshold: float
    ok: bool


@dataclass(frozen=True)
class Analysed:
    """What the model read off one file: the searched (pooled) latent, the windows' latents and the verdict."""

    latent: np.ndarray  # (512,)
    in_domain: InDomain
    window_latents: np.ndarray  # (w, 512)
    window_starts: np.ndarray  # seconds
    window_ends: np.ndarray
    window_in_domain: np.ndarray

    @property
    def has_segments(self) -> bool:
        """Longer than one window: its windows are stored and searched as segments."""
        return len(self.window_latents) > 1

    def windows(self) -> list[tuple[float, float, float | None, np.ndarray]]:
        """(start, end, in-domain score, latent) of each window."""
        return [
            (float(start), float(end), float(score), latent)
            for start, end, score, latent in zip(
                self.window_starts, self.window_ends, self.window_in_domain, self.window_latents, strict=True
            )
        ]


def recorded_threshold(metadata: dict[str, Any] | None) -> float | None:
    """The threshold the registry records for a model, when it holds a usable one (a number in [0, 1])."""
    value = (metadata or {}).get(THRESHOLD_KEY)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0.0 <= value <= 1.0 else None


def threshold_problem(metadata: dict[str, Any]) -> str | None:
    """Why a metadata update's ``in_domain_threshold`` cannot be recorded (None when it can, or is absent)."""
    if metadata.get(THRESHOLD_KEY) is None or recorded_threshold(metadata) is not None:
        return None
    return f"{THRESHOLD_KEY} must be a number in [0, 1]; got {metadata[THRESHOLD_KEY]!r}"


def verdict(model_metadata: dict[str, Any] | None, score: float, checkpoint_threshold: float) -> InDomain:
    """The score against the registry's threshold for the model (the checkpoint's when none is recorded)."""
    threshold = recorded_threshold(model_metadata)
    threshold = checkpoint_threshold if threshold is None else threshold
    return InDomain(score=float(score), threshold=threshold, ok=bool(score >= threshold))


def analysed(analysis, checkpoint_threshold: float, model_metadata: dict[str, Any] | None) -> Analysed:
    """``service.ml.pipeline.Analysis`` with the registry's verdict."""
    return Analysed(
        latent=np.asarray(analysis.latent, dtype=np.float32),
        in_domain=verdict(model_metadata, analysis.in_domain, checkpoint_threshold),
        window_latents=np.asarray(analysis.window_latents, dtype=np.float32),
        window_starts=np.asarray(analysis.window_starts, dtype=np.float64),
        window_ends=np.asarray(analysis.window_ends, dtype=np.float64),
        window_in_domain=np.asarray(analysis.window_in_domain, dtype=np.float64),
    )


def analyse_with(pipeline, audio: np.ndarray, sample_rate: int, model: Model | None) -> Analysed:
    """Blocking (run it off the event loop): the pipeline's analysis judged against ``model``'s threshold."""
    metadata = None if model is None else model.metadata_
    return analysed(pipeline.analyse(audio, sample_rate), pipeline.in_domain_threshold, metadata)


def segment_rows(generation_id: uuid.UUID, model_id: int, result: Analysed) -> list[tuple]:
    """Rows for ``latent_segments`` (``SEGMENT_COLUMNS`` order); none for a file of one window."""
    if not result.has_segments:
        return []
    return [(generation_id, model_id, start, end, score, latent) for start, end, score, latent in result.windows()]


def segment_dicts(generation_id: uuid.UUID, model_id: int, result: Analysed) -> list[dict[str, Any]]:
    names = [name for name, _ in SEGMENT_COLUMNS]
    return [dict(zip(names, row, strict=True)) for row in segment_rows(generation_id, model_id, result)]


def encode_with_windows(
    pipeline, model_id: int, clips: list[tuple[uuid.UUID, np.ndarray, int]]
) -> tuple[list[tuple[uuid.UUID, np.ndarray]], list[tuple[uuid.UUID, str]], list[tuple]]:
    """Latents of many stored clips (re-encodes): clips of one window in batched encodes, longer ones analysed
    one by one so their windows are kept as segment rows. Returns (latents in input order, refused, segments)."""
    from service.domain.catalogue.audio import encode_grouped
    from service.ml.errors import ModelInputError

    window = pipeline.config.clip_seconds
    short = [clip for clip in clips if len(clip[1]) <= window * clip[2]]
    encoded, refused = encode_grouped(pipeline, short)
    latents, rows = dict(encoded), []
    for key, audio, rate in (clip for clip in clips if len(clip[1]) > window * clip[2]):
        try:
            result = analysed(pipeline.analyse(audio, rate), pipeline.in_domain_threshold, None)
        except ModelInputError as exc:
            refused.append((key, exc.message))
            continue
        latents[key] = result.latent
        rows += segment_rows(key, model_id, result)
    return [(key, latents[key]) for key, _, _ in clips if key in latents], refused, rows


def copy_segments(conn, rows: list[tuple]) -> None:
    """Binary COPY of segment rows (``SEGMENT_COLUMNS`` order) on a psycopg connection."""
    from service.db.engine import copy_rows

    if rows:
        copy_rows(conn, "latent_segments", [n for n, _ in SEGMENT_COLUMNS], [t for _, t in SEGMENT_COLUMNS], rows)

"""Audio bytes in and out: WAV for storage, FLAC on request, decoding of uploads; batched encodes of clips."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac"}


def to_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(audio, dtype=np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """A stored audio file as mono float32 samples and its sample rate."""
    audio, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(sample_rate)


def wav_to_flac(wav: bytes) -> bytes:
    audio, sample_rate = sf.read(io.BytesIO(wav), dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def encode_grouped(
    pipeline, clips: list[tuple[Any, np.ndarray, int]]
) -> tuple[list[tuple[Any, np.ndarray]], list[tuple[Any, str]]]:
    """One batched encode per sample rate, results in input order; a batch the model refuses is retried clip by
    clip so only the bad clips fail."""
    from service.ml.errors import ModelInputError

    by_rate: dict[int, list[tuple[Any, np.ndarray]]] = defaultdict(list)
    for key, audio, rate in clips:
        by_rate[rate].append((key, audio))
    encoded: dict[Any, np.ndarray] = {}
    failed: list[tuple[Any, str]] = []
    for rate, group in by_rate.items():
        try:
            latents = pipeline.encode_batch([audio for _, audio in group], rate)
            encoded.update((key, latent) for (key, _), latent in zip(group, latents, strict=True))
        except ModelInputError:
            for key, audio in group:
                try:
                    encoded[key] = pipeline.encode(audio, rate)
                except ModelInputError as exc:
                    failed.append((key, exc.message))
    return [(key, encoded[key]) for key, _, _ in clips if key in encoded], failed

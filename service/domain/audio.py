"""Audio bytes in and out: WAV for storage, FLAC on request, decoding of uploads."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac"}


def to_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(audio, dtype=np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def wav_to_flac(wav: bytes) -> bytes:
    audio, sample_rate = sf.read(io.BytesIO(wav), dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()

"""Audio augmentation for training clips, so the model does not fit one SoundFont's samples.

Applied to rendered audio, as real uploads differ from clean renders: EQ tilt, synthetic room
reverb, background noise, a lower sample rate (band limit), an MP3 round trip and gain. Pitch
(tuning) is applied at render time by the corpus; start offsets when training crops a clip.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile

CODEC_PROBABILITY = 0.15
BAND_LIMIT_PROBABILITY = 0.15


def augment(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    out = eq_tilt(audio, sample_rate, rng.uniform(-4.0, 4.0))
    if rng.random() < 0.6:
        out = reverb(out, sample_rate, rt60=rng.uniform(0.2, 1.2), wet=rng.uniform(0.1, 0.5), rng=rng)
    if rng.random() < 0.5:
        out = add_noise(out, snr_db=rng.uniform(20.0, 45.0), rng=rng)
    if rng.random() < BAND_LIMIT_PROBABILITY:
        out = band_limit(out, sample_rate, rng.uniform(3000.0, 7000.0))
    if rng.random() < CODEC_PROBABILITY:
        out = mp3_round_trip(out, sample_rate)
    return (out * 10 ** (rng.uniform(-12.0, 0.0) / 20)).astype(np.float32)


def band_limit(audio: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """What a lower sample rate leaves: nothing above ``cutoff_hz``."""
    spectrum = np.fft.rfft(audio)
    spectrum[np.fft.rfftfreq(audio.size, 1.0 / sample_rate) > cutoff_hz] = 0.0
    return np.fft.irfft(spectrum, n=audio.size)


def mp3_round_trip(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Encode to MP3 and back (libsndfile), keeping the length; the encoder's delay is part of the point."""
    buffer = io.BytesIO()
    peak = max(1.0, float(np.abs(audio).max()))
    soundfile.write(buffer, (audio / peak).astype(np.float32), sample_rate, format="MP3")
    buffer.seek(0)
    decoded, _ = soundfile.read(buffer, dtype="float32")
    out = np.zeros_like(audio)
    out[: min(audio.size, decoded.size)] = decoded[: audio.size] * peak
    return out


def eq_tilt(audio: np.ndarray, sample_rate: int, db_per_octave: float) -> np.ndarray:
    """Spectral tilt pivoting at 1 kHz."""
    spectrum = np.fft.rfft(audio)
    freqs = np.maximum(np.fft.rfftfreq(audio.size, 1.0 / sample_rate), 20.0)
    gain = 10 ** (db_per_octave * np.log2(freqs / 1000.0) / 20.0)
    return np.fft.irfft(spectrum * gain, n=audio.size)


def reverb(audio: np.ndarray, sample_rate: int, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with exponentially decaying noise (a crude but effective room)."""
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    impulse = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    impulse /= np.sqrt(np.sum(impulse**2))
    size = audio.size + n
    tail = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(impulse, size), n=size)[: audio.size]
    return (1 - wet) * audio + wet * tail


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = np.mean(audio**2) + 1e-12
    return audio + rng.standard_normal(audio.size) * np.sqrt(power / 10 ** (snr_db / 10))

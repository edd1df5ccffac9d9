"""Audio augmentation for training clips, so the model does not fit one SoundFont's samples.

Applied to rendered audio: EQ tilt, synthetic room reverb, background noise and
gain. Pitch (tuning) and tempo jitter are applied at render time by the corpus.
"""

from __future__ import annotations

import numpy as np


def augment(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    out = eq_tilt(audio, sample_rate, rng.uniform(-4.0, 4.0))
    if rng.random() < 0.6:
        out = reverb(out, sample_rate, rt60=rng.uniform(0.2, 1.2), wet=rng.uniform(0.1, 0.5), rng=rng)
    if rng.random() < 0.5:
        out = add_noise(out, snr_db=rng.uniform(20.0, 45.0), rng=rng)
    return (out * 10 ** (rng.uniform(-12.0, 0.0) / 20)).astype(np.float32)


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

"""Synthetic non-music clips: what the in-domain head learns to reject.

Noise of several colours, steady and gliding tones, buzzy pulse trains through moving formant
filters (speech-like, but no recorded or synthesised speech: the evaluation's speech comes from
espeak-ng and is never trained on), clicks and amplitude-modulated noise. Deterministic per
generator.
"""

from __future__ import annotations

import numpy as np


def negative_clip(rng: np.random.Generator, sample_rate: int, n_samples: int) -> np.ndarray:
    kind = rng.integers(6)
    t = np.arange(n_samples) / sample_rate
    if kind == 0:
        audio = coloured_noise(rng, n_samples, exponent=rng.uniform(0.0, 2.0))
    elif kind == 1:
        f0 = rng.uniform(80.0, 3000.0) * 2 ** (rng.uniform(-1, 1) * t / t[-1] * rng.integers(2))
        audio = np.sin(2 * np.pi * np.cumsum(f0) / sample_rate)
    elif kind == 2:
        audio = _formant_buzz(rng, t, sample_rate)
    elif kind == 3:
        audio = np.zeros(n_samples)
        clicks = rng.integers(0, n_samples, size=int(rng.integers(4, 60)))
        audio[clicks] = rng.uniform(-1, 1, size=clicks.size)
    elif kind == 4:
        audio = coloured_noise(rng, n_samples, 1.0) * (1 + np.sin(2 * np.pi * rng.uniform(0.5, 8.0) * t))
    else:
        audio = (
            coloured_noise(rng, n_samples, rng.uniform(0.0, 2.0))
            * (rng.random(n_samples // 400 + 1) > 0.5).repeat(400)[:n_samples]
        )
    return (audio / (np.abs(audio).max() + 1e-9) * 0.5).astype(np.float32)


def coloured_noise(rng: np.random.Generator, n_samples: int, exponent: float) -> np.ndarray:
    """Noise with power falling as 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.maximum(np.fft.rfftfreq(n_samples), 1.0 / n_samples)
    return np.fft.irfft(spectrum / freqs ** (exponent / 2), n=n_samples)


def _formant_buzz(rng: np.random.Generator, t: np.ndarray, sample_rate: int) -> np.ndarray:
    f0 = rng.uniform(90.0, 250.0) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 5) * t))
    phase = np.cumsum(f0) / sample_rate
    buzz = (np.mod(phase, 1.0) < 0.1).astype(float) - 0.1
    spectrum = np.fft.rfft(buzz)
    freqs = np.fft.rfftfreq(t.size, 1.0 / sample_rate)
    shaping = sum(np.exp(-(((freqs - rng.uniform(lo, hi)) / 120.0) ** 2)) for lo, hi in ((300, 900), (900, 2500)))
    syllables = (np.sin(2 * np.pi * rng.uniform(2, 6) * t) > -0.3).astype(float)
    return np.fft.irfft(spectrum * shaping, n=t.size) * syllables

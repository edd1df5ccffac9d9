"""Synthetic non-music clips: what the in-domain head learns to reject.

Noise of several colours, steady and gliding tones, babbled speech-like syllables (a glottal pulse
train through moving formants with hissed consonants and pauses; no recorded or synthesised speech:
the evaluation's speech comes from espeak-ng and is never trained on), clicks and modulated noise. Deterministic per
generator.
"""

from __future__ import annotations

import numpy as np


def negative_clip(rng: np.random.Generator, sample_rate: int, n_samples: int) -> np.ndarray:
    kind = rng.integers(8)
    t = np.arange(n_samples) / sample_rate
    if kind == 0:
        audio = coloured_noise(rng, n_samples, exponent=rng.uniform(0.0, 2.0))
    elif kind == 1:
        f0 = rng.uniform(80.0, 3000.0) * 2 ** (rng.uniform(-1, 1) * t / t[-1] * rng.integers(2))
        audio = np.sin(2 * np.pi * np.cumsum(f0) / sample_rate)
    elif kind in (2, 6, 7):  # speech is the hardest to tell from music: three parts in eight
        audio = speech_like(rng, n_samples, sample_rate)
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


def speech_like(rng: np.random.Generator, n_samples: int, sample_rate: int) -> np.ndarray:
    """Babbled syllables: a glottal pulse train through formants that move from syllable to syllable,
    hissed and burst consonants, a falling pitch contour with accents, and pauses between words."""
    frames = n_samples // HOP + 1
    syllables = _syllables(rng, frames, sample_rate)
    freqs = np.fft.rfftfreq(FRAME, 1.0 / sample_rate)
    f0 = np.repeat(syllables["f0"], HOP)[:n_samples]
    tilt = 1.0 / (1.0 + freqs / 500.0)  # voiced speech falls about 6 dB an octave
    voiced = _stft(_unit(_glottal_pulses(f0, sample_rate))) * _formant_envelopes(syllables["formants"], freqs) * tilt
    hiss = _stft(_unit(rng.standard_normal(n_samples))) * _hiss_envelopes(syllables["hiss_centre"], freqs)
    spectrum = voiced * syllables["voicing"][:, None] + HISS_LEVEL * hiss * syllables["hiss"][:, None]
    return _istft(spectrum, n_samples)


def _unit(audio: np.ndarray) -> np.ndarray:
    return audio / (np.sqrt(np.mean(audio**2)) + 1e-12)


FRAME, HOP = 512, 128
HISS_LEVEL = 0.15  # consonants about 15 dB below the vowels


def _syllables(rng: np.random.Generator, frames: int, sample_rate: int) -> dict[str, np.ndarray]:
    """Per-frame tracks of one babbled utterance."""
    frame_seconds = HOP / sample_rate
    formants = np.zeros((frames, 3))
    voicing, hiss, hiss_centre = np.zeros(frames), np.zeros(frames), np.zeros(frames)
    base_f0 = rng.uniform(85.0, 260.0)
    accents = np.ones(frames)
    start = int(rng.uniform(0.0, 0.3) / frame_seconds)
    previous = _vowel(rng)
    while start < frames:
        length = int(rng.uniform(0.12, 0.35) / frame_seconds)
        onset = int(rng.uniform(0.02, 0.12) / frame_seconds) if rng.random() < 0.6 else 0
        span = slice(start, min(frames, start + length))
        n = span.stop - span.start
        vowel = _vowel(rng)
        glide = np.minimum(1.0, np.arange(n) / max(1, n // 3))[:, None]
        formants[span] = previous * (1 - glide) + vowel * glide
        voicing[span] = np.sin(np.pi * np.clip((np.arange(n) - onset) / max(1, n - onset), 0, 1)) ** 0.5
        hiss[span.start : span.start + onset] = 1.0
        hiss_centre[span] = rng.uniform(2500.0, 6500.0)
        accents[span] = rng.uniform(0.85, 1.25)
        previous = vowel
        start = span.stop + (int(rng.uniform(0.05, 0.4) / frame_seconds) if rng.random() < 0.25 else 0)
    declination = np.linspace(1.1, 0.85, frames)
    smooth = np.convolve(accents, np.ones(9) / 9, mode="same")
    return {
        "formants": formants,
        "voicing": voicing,
        "hiss": hiss,
        "hiss_centre": hiss_centre,
        "f0": base_f0 * declination * smooth,
    }


def _vowel(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(250, 850), rng.uniform(700, 2600), rng.uniform(2300, 3400)])


def _glottal_pulses(f0: np.ndarray, sample_rate: int) -> np.ndarray:
    phase = np.mod(np.cumsum(f0) / sample_rate, 1.0)
    open_quotient = 0.6
    pulse = np.where(phase < open_quotient, np.sin(np.pi * phase / open_quotient) ** 2, 0.0)
    return np.diff(pulse, prepend=0.0)


def _formant_envelopes(formants: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    bandwidths = np.array([80.0, 120.0, 180.0])
    gains = np.array([1.0, 0.6, 0.3])
    distance = (freqs[None, None, :] - formants[:, :, None]) / bandwidths[None, :, None]
    return (gains[None, :, None] / (1.0 + distance**2)).sum(axis=1)


def _hiss_envelopes(centres: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    return np.exp(-(((freqs[None, :] - centres[:, None]) / 1500.0) ** 2))


def _stft(audio: np.ndarray) -> np.ndarray:
    padded = np.pad(audio, (FRAME // 2, FRAME))
    frames = np.lib.stride_tricks.sliding_window_view(padded, FRAME)[: audio.size + 1 : HOP]
    return np.fft.rfft(frames * np.hanning(FRAME), axis=1)


def _istft(spectrum: np.ndarray, n_samples: int) -> np.ndarray:
    """Overlap-add of the windowed frames (FRAME is four hops, so four strided sums)."""
    frames = np.fft.irfft(spectrum, n=FRAME, axis=1) * np.hanning(FRAME)
    quarters = frames.reshape(len(frames), FRAME // HOP, HOP)
    out = np.zeros((len(frames) + FRAME // HOP, HOP))
    for q in range(FRAME // HOP):
        out[q : q + len(frames)] += quarters[:, q]
    return out.reshape(-1)[FRAME // 2 : FRAME // 2 + n_samples]

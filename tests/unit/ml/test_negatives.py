"""Synthetic non-music clips for the in-domain head."""

import numpy as np

from service.ml.data.negatives import negative_clip, speech_like

RATE, N = 16_000, 64_000


def test_negatives_are_deterministic_bounded_and_audible():
    clips = [negative_clip(np.random.default_rng(seed), RATE, N) for seed in range(24)]
    again = [negative_clip(np.random.default_rng(seed), RATE, N) for seed in range(24)]
    assert all(np.array_equal(a, b) for a, b in zip(clips, again, strict=True))
    for clip in clips:
        assert clip.dtype == np.float32 and clip.shape == (N,) and np.isfinite(clip).all()
        assert 0.4 < np.abs(clip).max() <= 0.5


def test_babble_comes_in_syllables_with_a_voice_below_4khz():
    audio = speech_like(np.random.default_rng(3), N, RATE)
    frame_energy = (audio[: N // 400 * 400].reshape(-1, 400) ** 2).mean(axis=1)
    assert frame_energy.min() < 0.05 * frame_energy.max()  # onsets, releases and pauses
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(N, 1.0 / RATE)
    assert spectrum[(freqs > 80) & (freqs < 4000)].sum() > 0.7 * spectrum.sum()

"""Synthetic non-music clips for the in-domain head."""

import numpy as np

from service.ml.data.negatives import negative_clip

RATE, N = 16_000, 64_000


def test_negatives_are_deterministic_bounded_and_audible():
    clips = [negative_clip(np.random.default_rng(seed), RATE, N) for seed in range(24)]
    again = [negative_clip(np.random.default_rng(seed), RATE, N) for seed in range(24)]
    assert all(np.array_equal(a, b) for a, b in zip(clips, again, strict=True))
    for clip in clips:
        assert clip.dtype == np.float32 and clip.shape == (N,) and np.isfinite(clip).all()
        assert 0.4 < np.abs(clip).max() <= 0.5

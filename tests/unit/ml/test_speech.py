"""Spoken negatives: never the evaluation's voices or sentences; bounded crops."""

import shutil

import numpy as np
import pytest

from service.ml.data import speech

RATE, N = 16_000, 64_000


def test_training_speech_shares_no_sentence_with_the_evaluation():
    assert not set(speech.TRAINING_SENTENCES) & set(speech.EVALUATION_SENTENCES)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_training_voices_exclude_every_dialect_of_the_evaluation_languages():
    voices = speech.training_voices()
    assert len(voices) > 50
    languages = {voice.split("-")[0] for voice in voices}
    assert not languages & {voice.split("-")[0] for voice in speech.EVALUATION_VOICES}


def test_crops_have_the_clip_length_and_a_bounded_level():
    rng = np.random.default_rng(0)
    pool = np.zeros((3, 3 * RATE), dtype=np.float32)
    pool[:, : RATE // 2] = rng.standard_normal((3, RATE // 2))  # short utterances: padded, not truncated
    for _ in range(10):
        clip = speech.crop(rng, pool, N)
        assert clip.shape == (N,) and clip.dtype == np.float32
        assert 0.2 <= np.abs(clip).max() <= 0.9


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_the_pool_is_rendered_once_and_read_from_the_cache(tmp_path):
    first = speech.pool(3, RATE, tmp_path)
    assert first.shape[0] == 3 and np.abs(first).max() > 0.01
    assert len(list(tmp_path.glob("speech-*.npy"))) == 1
    assert np.array_equal(speech.pool(3, RATE, tmp_path), first)

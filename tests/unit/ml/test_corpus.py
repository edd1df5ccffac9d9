import numpy as np

from service.ml import corpus
from service.ml.config import PRESETS
from service.ml.instruments import FAMILIES, held_out_program
from service.ml.music import MAX_BPM, MIN_BPM, compose, realise

TINY = PRESETS["tiny"]


def test_rendering_is_deterministic_and_audible():
    first = corpus.build(TINY.corpus, TINY.model, "validation")
    second = corpus.build(TINY.corpus, TINY.model, "validation")
    assert np.array_equal(first.audio, second.audio)
    assert first.labels == second.labels
    assert first.audio.shape == (len(first.labels), TINY.model.n_samples)
    assert np.all(np.sqrt(np.mean(first.audio**2, axis=1)) > 1e-3)


def test_splits_share_no_melody_and_keep_labels():
    splits = {name: corpus.build(TINY.corpus, TINY.model, name) for name in ("train", "validation", "test")}
    melodies = {name: set(split.column("melody_id")) for name, split in splits.items()}
    assert not melodies["train"] & melodies["validation"]
    assert not melodies["train"] & melodies["test"]
    assert not melodies["validation"] & melodies["test"]
    for label in splits["train"].labels:
        assert MIN_BPM <= label.bpm <= MAX_BPM and label.mode in ("major", "minor")
        assert label.program in FAMILIES[label.family]
        assert label.program != held_out_program(label.family)
    assert any(label.held_out_program for label in splits["test"].labels)


def test_at_least_twelve_families():
    assert len(FAMILIES) >= 12
    assert all(len(programs) >= 2 for programs in FAMILIES.values())


def test_melody_is_key_agnostic_and_realises_in_both_modes():
    melody = compose(7, seed=0)
    assert melody == compose(7, seed=0) and melody != compose(8, seed=0)
    major = [e.pitch for e in realise(melody, 0, "major", 120, 60, drums=False)]
    minor = [e.pitch for e in realise(melody, 0, "minor", 120, 60, drums=False)]
    assert len(major) == len(minor) and major != minor
    with_drums = realise(melody, 0, "major", 120, 60, drums=True)
    assert any(event.drum for event in with_drums)


def test_cache_round_trip(ml_cache):
    loaded = corpus.load(TINY.corpus, TINY.model, "validation")
    cached = corpus.load(TINY.corpus, TINY.model, "validation")
    assert cached.labels == loaded.labels
    assert np.allclose(cached.audio, loaded.audio, atol=1e-3)


def test_cache_path_changes_with_the_instrument_table(ml_cache, monkeypatch):
    before = corpus.cache_path(TINY.corpus, TINY.model, "train", None)
    assert corpus.cache_path(TINY.corpus, TINY.model, "train", None) == before
    monkeypatch.setitem(corpus.FAMILIES, "piano", (0, 1, 2, 3, 4, 6, 5))
    assert corpus.cache_path(TINY.corpus, TINY.model, "train", None) != before

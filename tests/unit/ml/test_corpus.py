import numpy as np
import pytest

from service.ml.config import PRESETS
from service.ml.data import corpus
from service.ml.data.banks import BANKS, training_banks
from service.ml.data.instruments import FAMILIES, register
from service.ml.data.music import MAX_BPM, MIN_BPM, compose, realise, realise_parts

TINY = PRESETS["tiny"]


def test_rendering_is_deterministic_and_audible():
    first = corpus.build(TINY.corpus, TINY.model, "validation")
    second = corpus.build(TINY.corpus, TINY.model, "validation")
    assert np.array_equal(first.audio, second.audio)
    assert first.labels == second.labels
    margin = int(TINY.corpus.margin_seconds * TINY.model.sample_rate)
    assert first.audio.shape == (len(first.labels), TINY.model.n_samples + margin)
    assert np.all(np.sqrt(np.mean(first.audio**2, axis=1)) > 1e-3)


def test_a_scene_plays_one_melody_in_one_register_on_several_instruments():
    clips = corpus.build(TINY.corpus, TINY.model, "train")
    scenes: dict[int, list] = {}
    for label in clips.labels:
        scenes.setdefault(label.scene_id, []).append(label)
    assert len(scenes) == TINY.corpus.train_scenes
    for labels in scenes.values():
        assert len(labels) == TINY.corpus.renders_per_scene
        assert len({(lab.bpm, lab.mode, lab.key, lab.drums, lab.texture) for lab in labels}) == 1
        assert len({register(lab.family) for lab in labels}) == 1
        for label in labels:
            assert label.program in FAMILIES[label.family] and label.bank == "merlin"
            assert MIN_BPM <= label.bpm <= MAX_BPM
    assert any(len({lab.family for lab in labels}) > 1 for labels in scenes.values())


def test_splits_share_no_scene():
    train, validation = (corpus.build(TINY.corpus, TINY.model, name) for name in ("train", "validation"))
    assert not set(train.column("scene_id")) & set(validation.column("scene_id"))


def test_held_out_banks_can_never_be_trained_on():
    with pytest.raises(ValueError, match="held out"):
        training_banks(("merlin", "fluidr3"))
    assert BANKS["fluidr3"].role == BANKS["aspirin"].role == "test"


def test_melody_parts_and_realisation():
    melody = compose(7, seed=0)
    assert melody == compose(7, seed=0) and melody != compose(8, seed=0)
    major = [e.pitch for e in realise(melody, 0, "major", 120, 60, drums=False)]
    minor = [e.pitch for e in realise(melody, 0, "minor", 120, 60, drums=False)]
    assert len(major) == len(minor) and major != minor
    parts = realise_parts(melody, 0, "major", 120, 60, drums=True)
    assert parts["lead"] and parts["drums"] and all(e.drum for e in parts["drums"])
    assert sorted(e.pitch for p in parts.values() for e in p) == sorted(
        e.pitch for e in realise(melody, 0, "major", 120, 60, drums=True)
    )


def test_test_clips_cover_every_family_of_a_bank():
    clips = corpus.render_test_clips(BANKS["timgm6mb"], 1, TINY.model)
    assert set(clips.column("family")) == set(FAMILIES)
    assert clips.audio.shape == (len(FAMILIES), TINY.model.n_samples)
    assert {label.scene_id for label in clips.labels} >= {corpus.SPLIT_OFFSETS["test"]}


def test_cache_round_trip(ml_cache):
    loaded = corpus.load(TINY.corpus, TINY.model, "validation")
    cached = corpus.load(TINY.corpus, TINY.model, "validation")
    assert cached.labels == loaded.labels
    assert np.allclose(cached.audio, loaded.audio, atol=1e-3)


def test_cache_path_changes_with_the_instrument_table(ml_cache, monkeypatch):
    before = corpus.cache_path(TINY.corpus, TINY.model, "train")
    assert corpus.cache_path(TINY.corpus, TINY.model, "train") == before
    monkeypatch.setitem(corpus.FAMILIES, "piano", (0, 1, 2, 3, 4, 6, 5))
    assert corpus.cache_path(TINY.corpus, TINY.model, "train") != before


def test_a_weighted_bank_leads_renders_that_many_times_as_often():
    pairs = (("merlin", 0), ("merlin", 1), ("merlin", 2), ("tonejs", 0))
    rng = np.random.default_rng(0)
    drawn = [corpus._draw_instrument(pairs, {"tonejs": 3.0}, rng)[0] for _ in range(6000)]
    assert drawn.count("tonejs") / len(drawn) == pytest.approx(0.5, abs=0.03)
    unweighted = [corpus._draw_instrument(pairs, {}, rng)[0] for _ in range(6000)]
    assert unweighted.count("tonejs") / len(unweighted) == pytest.approx(0.25, abs=0.03)

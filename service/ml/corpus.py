"""The labelled training corpus: procedural melodies rendered with SoundFont instruments.

Deterministic from ``CorpusConfig.seed``. Melody ids are disjoint per split
(train < 100000 <= validation < 200000 <= test), so no melody crosses splits.
Every melody is rendered several times with different families, keys, modes,
tempi and drums. Training uses all but the last program of each family; the
test split plays every second render on that held-out program. Training clips
are augmented (tuning, EQ tilt, reverb, noise, gain).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from service.ml.augment import augment
from service.ml.config import CorpusConfig, ModelConfig
from service.ml.instruments import (
    DEFAULT_REGISTER,
    FAMILIES,
    FAMILY_NAMES,
    FAMILY_REGISTER,
    held_out_program,
    train_programs,
)
from service.ml.music import MAX_BPM, MIN_BPM, MODES, compose, realise
from service.ml.render import render
from service.ml.soundfonts import soundfont_path

SPLITS = ("train", "validation", "test")
SPLIT_OFFSETS = {"train": 0, "validation": 100_000, "test": 200_000}
DRUM_PROBABILITY = 0.3
CACHE_VERSION = 1


@dataclass(frozen=True)
class ClipLabels:
    split: str
    melody_id: int
    render: int
    family: str
    program: int
    held_out_program: bool
    bpm: int
    mode: str
    key: int
    drums: bool
    texture: str
    soundfont: str
    seed: int


@dataclass
class Corpus:
    audio: np.ndarray  # (n, n_samples) float32
    labels: list[ClipLabels]

    def column(self, name: str) -> list:
        return [getattr(label, name) for label in self.labels]

    def subset(self, indices) -> Corpus:
        return Corpus(self.audio[indices], [self.labels[i] for i in indices])


def tempo_class(bpm: float) -> str:
    return "slow" if bpm < 90 else ("medium" if bpm <= 130 else "fast")


def melody_count(config: CorpusConfig, split: str) -> int:
    return {"train": config.train_melodies, "validation": config.val_melodies, "test": config.test_melodies}[split]


def build(config: CorpusConfig, model: ModelConfig, split: str, soundfont: str | None = None) -> Corpus:
    """Render one split (no cache)."""
    soundfont = soundfont or config.soundfont
    renders = config.renders_per_melody if split == "train" else config.eval_renders_per_melody
    clips, labels = [], []
    for position in range(melody_count(config, split)):
        melody_id = SPLIT_OFFSETS[split] + position
        melody = compose(melody_id, config.seed)
        rng = np.random.default_rng([config.seed, melody_id, 1])
        families = rng.permutation(len(FAMILY_NAMES))[:renders]
        for index, family_id in enumerate(families):
            label = _draw_labels(rng, split, melody_id, index, FAMILY_NAMES[family_id], soundfont, config.seed)
            clips.append(_render_clip(melody, label, model, rng))
            labels.append(label)
    return Corpus(np.stack(clips).astype(np.float32), labels)


def _draw_labels(rng, split, melody_id, index, family, soundfont, seed) -> ClipLabels:
    held_out = split == "test" and index % 2 == 1
    program = held_out_program(family) if held_out else int(rng.choice(train_programs(family)))
    return ClipLabels(
        split=split,
        melody_id=melody_id,
        render=index,
        family=family,
        program=program,
        held_out_program=held_out,
        bpm=int(rng.integers(MIN_BPM, MAX_BPM + 1)),
        mode=MODES[int(rng.integers(2))],
        key=int(rng.integers(12)),
        drums=bool(rng.random() < DRUM_PROBABILITY),
        texture=compose(melody_id, seed).texture,
        soundfont=soundfont,
        seed=seed,
    )


def _render_clip(melody, label: ClipLabels, model: ModelConfig, rng: np.random.Generator) -> np.ndarray:
    tonic = FAMILY_REGISTER.get(label.family, DEFAULT_REGISTER)
    events = realise(melody, label.key, label.mode, label.bpm, tonic, label.drums)
    augmented = label.split == "train" and rng.random() < 0.8
    tuning = rng.uniform(-0.3, 0.3) if augmented else 0.0
    audio = render(events, label.program, soundfont_path(label.soundfont), model.sample_rate, model.n_samples, tuning)
    if augmented:
        audio = augment(audio, model.sample_rate, rng)
    return np.clip(audio, -1.0, 1.0)


def cache_dir() -> Path:
    return Path(os.environ.get("SOUNDALIKE_ML_CACHE", Path.home() / ".cache" / "soundalike" / "corpus"))


def load(config: CorpusConfig, model: ModelConfig, split: str, soundfont: str | None = None) -> Corpus:
    """Render a split once and keep it in the on-disk cache (float16 audio + JSON labels)."""
    path = cache_path(config, model, split, soundfont)
    if path.exists():
        with np.load(path) as data:
            labels = [ClipLabels(**item) for item in json.loads(str(data["labels"]))]
            return Corpus(data["audio"].astype(np.float32), labels)
    corpus = build(config, model, split, soundfont)
    save(corpus, path)
    return corpus


def cache_path(config: CorpusConfig, model: ModelConfig, split: str, soundfont: str | None) -> Path:
    """Named by everything the renders depend on, the instrument table included."""
    instruments = [FAMILIES, FAMILY_REGISTER, DEFAULT_REGISTER]
    key = json.dumps([CACHE_VERSION, asdict(config), model.sample_rate, model.n_samples, split, soundfont, instruments])
    return cache_dir() / f"{split}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def save(corpus: Corpus, path: Path) -> None:
    """Write atomically: a temp file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npz")
    labels = json.dumps([asdict(label) for label in corpus.labels])
    np.savez(temporary, audio=corpus.audio.astype(np.float16), labels=np.array(labels))
    os.replace(temporary, path)

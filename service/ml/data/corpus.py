"""The labelled training corpus: procedural scenes rendered with many instrument sample banks.

A *scene* is one melody in one key, mode, tempo and register, rendered several times, each time by
another (family, bank, program): the renders line up note for note, so training can ask the
decoder to play one render's notes with another render's sound (the content/global split).
Deterministic from ``CorpusConfig.seed``; scene ids are disjoint per split (train < 100000 <=
validation < 200000 <= test), so no melody crosses splits. Every bank's programs that share a
sample with a held-out bank are dropped first (``overlap``). Training clips are longer than a
model clip (``margin_seconds``) so training can crop them at any start offset.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from service.ml.config import CorpusConfig, ModelConfig
from service.ml.data import overlap
from service.ml.data.augment import augment
from service.ml.data.banks import BANKS, Bank, training_banks
from service.ml.data.instruments import FAMILIES, FAMILY_NAMES, register, register_groups
from service.ml.data.music import MAX_BPM, MIN_BPM, MODES, compose, realise_parts

SPLITS = ("train", "validation")
SPLIT_OFFSETS = {"train": 0, "validation": 100_000, "test": 200_000}
DRUM_PROBABILITY = 0.3
CACHE_VERSION = 2


@dataclass(frozen=True)
class ClipLabels:
    split: str
    scene_id: int
    render: int
    family: str
    bank: str
    program: int
    bpm: int
    mode: str
    key: int
    drums: bool
    texture: str
    mixed_with: str  # family of the accompaniment when it is another instrument, else ""
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


@lru_cache(maxsize=8)
def clean_instruments(banks: tuple[str, ...], held_out: tuple[str, ...]) -> dict[str, tuple[tuple[str, int], ...]]:
    """family -> the (bank, program) pairs that may be rendered: programs sharing a sample with a held-out
    bank are dropped."""
    against = [BANKS[name] for name in held_out]
    out: dict[str, list[tuple[str, int]]] = {family: [] for family in FAMILY_NAMES}
    for bank in [BANKS[name] for name in banks]:
        kept = overlap.clean_programs(bank, against)[0] if against else dict.fromkeys(overlap.all_programs())
        for family, programs in FAMILIES.items():
            out[family] += [(bank.name, p) for p in programs if p in kept and bank.has_program(p)]
    return {family: tuple(pairs) for family, pairs in out.items()}


def scene_count(config: CorpusConfig, split: str) -> int:
    return {"train": config.train_scenes, "validation": config.val_scenes}[split]


def build(config: CorpusConfig, model: ModelConfig, split: str, workers: int = 1, progress: bool = False) -> Corpus:
    """Render one split (no cache); scenes are independent, so ``workers`` processes share them."""
    training_banks(config.banks)
    instruments = clean_instruments(config.banks, config.held_out_banks)
    scene_ids = [SPLIT_OFFSETS[split] + i for i in range(scene_count(config, split))]
    jobs = [(config, model, split, scene_id, instruments) for scene_id in scene_ids]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            scenes = list(tqdm(pool.map(_render_scene, jobs, chunksize=8), total=len(jobs), disable=not progress))
    else:
        scenes = [_render_scene(job) for job in tqdm(jobs, disable=not progress)]
    clips = [clip for scene in scenes for clip, _ in scene]
    labels = [label for scene in scenes for _, label in scene]
    return Corpus(np.stack(clips).astype(np.float32), labels)


def _render_scene(job) -> list[tuple[np.ndarray, ClipLabels]]:
    config, model, split, scene_id, instruments = job
    rng = np.random.default_rng([config.seed, scene_id, 2])
    melody = compose(scene_id, config.seed)
    tonic = _draw_register(rng)
    families = [f for f in register_groups()[tonic] if instruments[f]]
    bpm, mode, key = int(rng.integers(MIN_BPM, MAX_BPM + 1)), MODES[int(rng.integers(2))], int(rng.integers(12))
    drums = bool(rng.random() < DRUM_PROBABILITY)
    parts = realise_parts(melody, key, mode, bpm, tonic, drums)
    tuning = float(rng.uniform(-0.3, 0.3))
    n_samples = int(round(model.sample_rate * (model.clip_seconds + config.margin_seconds)))
    order = rng.permutation(len(families))
    out = []
    for index in range(config.renders_per_scene):
        family = families[order[index % len(families)]]
        bank, program = _draw_instrument(instruments[family], dict(config.bank_weights), rng)
        mixed = rng.random() < config.mixture_probability and len(families) > 1
        partner = families[int(rng.integers(len(families)))] if mixed else family
        mixed_with = partner if partner != family else ""
        audio = _render_mix(parts, (bank, program), instruments[partner], mixed_with, model, n_samples, tuning, rng)
        if split == "train" and rng.random() < config.augment_probability:
            audio = augment(audio, model.sample_rate, rng)
        label = ClipLabels(
            split,
            scene_id,
            index,
            family,
            bank,
            program,
            bpm,
            mode,
            key,
            drums,
            melody.texture,
            mixed_with,
            config.seed,
        )
        out.append((np.clip(audio, -1.0, 1.0).astype(np.float32), label))
    return out


def _draw_instrument(
    pairs: tuple[tuple[str, int], ...], bank_weights: dict[str, float], rng: np.random.Generator
) -> tuple[str, int]:
    """One (bank, program) of a family; a weighted bank's programs are drawn ``weight`` times as often."""
    if not bank_weights:
        return pairs[int(rng.integers(len(pairs)))]
    weights = np.array([bank_weights.get(bank, 1.0) for bank, _ in pairs], dtype=float)
    return pairs[int(rng.choice(len(pairs), p=weights / weights.sum()))]


def _draw_register(rng: np.random.Generator) -> int:
    """A register, weighted by how many families play there."""
    groups = register_groups()
    weights = np.array([len(families) for families in groups.values()], dtype=float)
    return list(groups)[int(rng.choice(len(groups), p=weights / weights.sum()))]


def _render_mix(parts, lead, partners, mixed_with, model, n_samples, tuning, rng) -> np.ndarray:
    bank, program = BANKS[lead[0]], lead[1]
    rate = model.sample_rate
    if mixed_with:
        other_bank, other_program = partners[int(rng.integers(len(partners)))]
        audio = bank.render(parts["lead"], program, rate, n_samples, tuning)
        audio += rng.uniform(0.3, 0.6) * BANKS[other_bank].render(
            parts["accompaniment"], other_program, rate, n_samples, tuning
        )
    else:
        audio = bank.render(parts["lead"] + parts["accompaniment"], program, rate, n_samples, tuning)
    if parts["drums"]:
        audio += _drum_bank(bank, rng).render(parts["drums"], 0, rate, n_samples)
    return audio


def _drum_bank(bank: Bank, rng: np.random.Generator) -> Bank:
    """WebAudioFont presets are melodic only: their drums come from one of the SoundFont training banks."""
    if bank.kind == "sf2":
        return bank
    kits = [b for b in (BANKS["merlin"], BANKS["opl3"], BANKS["a320u"]) if b.available()]
    return kits[int(rng.integers(len(kits)))]


def render_test_clips(
    bank: Bank, per_family: int, model: ModelConfig, seed: int = 0, programs: dict[str, tuple[int, ...]] | None = None
) -> Corpus:
    """Clean clips of one bank for evaluation: test melodies, every family ``per_family`` times, each family in
    its register, no drums or augmentation."""
    programs = programs or {f: tuple(p for p in FAMILIES[f] if bank.has_program(p)) for f in FAMILY_NAMES}
    clips, labels = [], []
    for f_index, family in enumerate(FAMILY_NAMES):
        for i in range(per_family if programs[family] else 0):
            scene_id = SPLIT_OFFSETS["test"] + f_index * 1000 + i
            rng = np.random.default_rng([seed, scene_id, 3])
            melody = compose(scene_id, seed)
            bpm, mode, key = int(rng.integers(MIN_BPM, MAX_BPM + 1)), MODES[int(rng.integers(2))], int(rng.integers(12))
            program = programs[family][int(rng.integers(len(programs[family])))]
            parts = realise_parts(melody, key, mode, bpm, register(family), False)
            audio = bank.render(parts["lead"] + parts["accompaniment"], program, model.sample_rate, model.n_samples)
            clips.append(np.clip(audio, -1.0, 1.0))
            labels.append(
                ClipLabels(
                    "test", scene_id, 0, family, bank.name, program, bpm, mode, key, False, melody.texture, "", seed
                )
            )
    return Corpus(np.stack(clips).astype(np.float32), labels)


def render_clean_clips(
    bank: Bank, against: list[Bank], per_family: int, model: ModelConfig, seed: int = 0
) -> tuple[Corpus, dict[int, int]]:
    """Test clips of ``bank`` from its programs that share no sample with ``against`` (the training banks), and
    the dropped programs (program -> shared samples)."""
    kept, dropped = overlap.clean_programs(bank, [b for b in against if b.available()])
    programs = {family: tuple(p for p in FAMILIES[family] if p in kept) for family in FAMILY_NAMES}
    return render_test_clips(bank, per_family, model, seed, programs), dropped


def cache_dir() -> Path:
    return Path(os.environ.get("SOUNDALIKE_ML_CACHE", Path.home() / ".cache" / "soundalike" / "corpus"))


def load(config: CorpusConfig, model: ModelConfig, split: str, workers: int = 1, progress: bool = False) -> Corpus:
    """Render a split once and keep it in the on-disk cache (float16 audio + JSON labels)."""
    path = cache_path(config, model, split)
    if path.exists():
        with np.load(path) as data:
            labels = [ClipLabels(**item) for item in json.loads(str(data["labels"]))]
            return Corpus(data["audio"].astype(np.float32), labels)
    corpus = build(config, model, split, workers, progress)
    save(corpus, path)
    return corpus


def cache_path(config: CorpusConfig, model: ModelConfig, split: str) -> Path:
    """Named by everything the renders depend on, the instrument table included."""
    renders = {name: value for name, value in asdict(config).items() if name != "selection_bank"}
    key = json.dumps([CACHE_VERSION, renders, model.sample_rate, model.clip_seconds, split, FAMILIES])
    return cache_dir() / f"{split}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def save(corpus: Corpus, path: Path) -> None:
    """Write atomically: a temp file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npz")
    labels = json.dumps([asdict(label) for label in corpus.labels])
    np.savez(temporary, audio=corpus.audio.astype(np.float16), labels=np.array(labels))
    os.replace(temporary, path)

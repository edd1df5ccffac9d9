"""Training batches: pairs of renders of one scene, shifted views, and synthetic non-music clips.

A step draws ``batch_scenes`` scenes and two renders of each (A and B: same notes, different
instrument), both cropped at the same random start so their notes line up. Each A also gets a
*view*: the same render cropped elsewhere and started late (silence prepended), with a random EQ
tilt, so the global latent learns to ignore where the music starts and how it is coloured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from service.ml.audio import MelFrontEnd, normalise_loudness
from service.ml.config import Preset
from service.ml.data import speech
from service.ml.data.corpus import Corpus
from service.ml.data.negatives import negative_clip
from service.ml.tags import labels_to_slot_ids

EQ_TILT_RANGE = 0.6  # natural-log units across the mel axis (about +-5 dB)


@dataclass
class SceneIndex:
    """Rows of the corpus grouped by scene: (n_scenes, renders) indices, and each row's slot ids."""

    rows: np.ndarray
    slot_ids: torch.Tensor  # (n_clips, 5) family, mode, tempo, bpm, drums (1-based)

    @classmethod
    def of(cls, corpus: Corpus) -> SceneIndex:
        scenes: dict[int, list[int]] = {}
        for row, label in enumerate(corpus.labels):
            scenes.setdefault(label.scene_id, []).append(row)
        width = min(len(rows) for rows in scenes.values())
        ids = [labels_to_slot_ids(c.family, c.mode, c.bpm, c.drums) for c in corpus.labels]
        return cls(np.array([rows[:width] for rows in scenes.values()]), torch.tensor(ids, dtype=torch.long))


@dataclass
class Batch:
    log_mel_a: torch.Tensor
    log_mel_b: torch.Tensor
    log_mel_view: torch.Tensor
    log_mel_negative: torch.Tensor
    ids_a: torch.Tensor
    ids_b: torch.Tensor


def sample(
    corpus: Corpus,
    index: SceneIndex,
    preset: Preset,
    frontend: MelFrontEnd,
    rng: np.random.Generator,
    speech_pool: np.ndarray | None = None,
) -> Batch:
    """One step's clips; ``speech_pool`` (rendered speech) supplies ``train.speech_negatives`` of the negatives."""
    model, train = preset.model, preset.train
    scenes = rng.choice(len(index.rows), size=train.batch_scenes, replace=False)
    pairs = np.array([rng.choice(index.rows[s], size=2, replace=False) for s in scenes])
    margin = corpus.audio.shape[1] - model.n_samples
    starts = rng.integers(0, margin + 1, size=len(pairs))
    crop_a = np.stack([corpus.audio[r, s : s + model.n_samples] for r, s in zip(pairs[:, 0], starts, strict=True)])
    crop_b = np.stack([corpus.audio[r, s : s + model.n_samples] for r, s in zip(pairs[:, 1], starts, strict=True)])
    views = np.stack([_view(corpus.audio[r], model.n_samples, model.sample_rate, train, rng) for r in pairs[:, 0]])
    spoken = train.speech_negatives if speech_pool is not None else 0
    negatives = np.stack(
        [speech.crop(rng, speech_pool, model.n_samples) for _ in range(spoken)]
        + [negative_clip(rng, model.sample_rate, model.n_samples) for _ in range(train.negatives_per_batch - spoken)]
    )
    return Batch(
        log_mel_a=log_mel(crop_a, frontend),
        log_mel_b=log_mel(crop_b, frontend),
        log_mel_view=_tilt(log_mel(views, frontend), rng),
        log_mel_negative=log_mel(negatives, frontend),
        ids_a=index.slot_ids[pairs[:, 0]],
        ids_b=index.slot_ids[pairs[:, 1]],
    )


def log_mel(clips: np.ndarray, frontend: MelFrontEnd) -> torch.Tensor:
    return frontend.log_mel(torch.from_numpy(normalise_loudness(np.ascontiguousarray(clips, dtype=np.float32))))


def _view(audio: np.ndarray, n_samples: int, sample_rate: int, train, rng: np.random.Generator) -> np.ndarray:
    start = int(rng.integers(0, audio.size - n_samples + 1))
    delay = int(rng.uniform(0.0, train.max_offset_seconds) * sample_rate)
    out = np.zeros(n_samples, dtype=np.float32)
    out[delay:] = audio[start : start + n_samples - delay]
    return out


def _tilt(log_mel: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random spectral tilt across the mel bands (an EQ)."""
    ramp = torch.linspace(-0.5, 0.5, log_mel.shape[1])
    slopes = torch.from_numpy(rng.uniform(-EQ_TILT_RANGE, EQ_TILT_RANGE, size=len(log_mel)).astype(np.float32))
    return log_mel + slopes[:, None, None] * ramp[None, :, None]


def slot_targets(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """0-based class targets of the label heads."""
    return {"family": ids[:, 0] - 1, "mode": ids[:, 1] - 1, "tempo": ids[:, 2] - 1, "drums": ids[:, 4] - 1}

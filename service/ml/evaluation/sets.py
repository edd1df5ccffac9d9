"""The evaluation's clip sets and the DSP baseline every retrieval number is compared with.

- Cross-bank sets: clips rendered with banks the model never trained on (``banks.CROSS_BANK_TEST``,
  ``banks.SECOND_TEST``) and TimGM6mb with every program that shares a sample with a training bank
  removed. A bank that is not installed here is reported as unavailable, never silently skipped.
- The in-domain set: the preset's validation split (training banks, melodies never trained on),
  which the generation metrics use as "real" audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from service.ml.audio import normalise_loudness
from service.ml.config import CorpusConfig
from service.ml.data import corpus
from service.ml.data.banks import BANKS, CROSS_BANK_TEST, SECOND_TEST
from service.ml.model.autoencoder import band_statistics
from service.ml.pipeline import Pipeline

BATCH = 64


@dataclass
class ClipSet:
    name: str
    audio: np.ndarray  # (n, n_samples) at the model's rate
    labels: list[corpus.ClipLabels]
    latents: np.ndarray  # (n, 512) the model's global latents
    band_summary: np.ndarray  # (n, 128) mean + std of each log-mel band: the DSP baseline's raw features
    dropped_programs: dict[int, int]

    @property
    def baseline(self) -> np.ndarray:
        return self.zscore(self.band_summary)

    def zscore(self, features: np.ndarray) -> np.ndarray:
        """The baseline's vectors: band summaries z-scored per dimension with this set's statistics."""
        return (features - self.band_summary.mean(0)) / (self.band_summary.std(0) + 1e-6)

    def column(self, name: str) -> list:
        if name == "tempo":
            return [corpus.tempo_class(label.bpm) for label in self.labels]
        return [getattr(label, name) for label in self.labels]

    @property
    def families(self) -> np.ndarray:
        return np.array(self.column("family"), dtype=object)


def cross_bank_sets(pipeline: Pipeline, per_family: int) -> dict[str, ClipSet | str]:
    """name -> set, or the reason it is unavailable."""
    training = [BANKS[name] for name in CorpusConfig(**pipeline.metadata["corpus_config"]).banks]
    out: dict[str, ClipSet | str] = {}
    for name in (CROSS_BANK_TEST, SECOND_TEST, "timgm6mb"):
        bank = BANKS[name]
        if not bank.available():
            out[name] = f"{bank.source} is not installed here"
            continue
        clips, dropped = corpus.render_clean_clips(bank, training, per_family, pipeline.config)
        out[name] = clip_set(pipeline, name, clips.audio, clips.labels, dropped)
    return out


def in_domain_set(pipeline: Pipeline, max_clips: int) -> ClipSet:
    config = CorpusConfig(**pipeline.metadata["corpus_config"])
    clips = corpus.load(config, pipeline.config, "validation")
    audio = clips.audio[:max_clips, : pipeline.config.n_samples]
    return clip_set(pipeline, "validation", audio, clips.labels[:max_clips], {})


def clip_set(pipeline: Pipeline, name: str, audio: np.ndarray, labels, dropped: dict[int, int]) -> ClipSet:
    return ClipSet(name, audio, labels, encode(pipeline, audio), band_summary(pipeline, audio), dropped)


def encode(pipeline: Pipeline, audio: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
    rate = sample_rate or pipeline.config.sample_rate
    return np.concatenate(
        [pipeline.encode_batch(list(audio[i : i + BATCH]), rate) for i in range(0, len(audio), BATCH)]
    )


def band_summary(pipeline: Pipeline, audio: np.ndarray) -> np.ndarray:
    """The DSP baseline's raw features: mean and standard deviation of each of the 64 log-mel bands."""
    rows = []
    for i in range(0, len(audio), BATCH):
        clips = torch.from_numpy(normalise_loudness(np.ascontiguousarray(audio[i : i + BATCH], dtype=np.float32)))
        rows.append(band_statistics(pipeline.frontend.log_mel(clips)).numpy())
    return np.concatenate(rows)

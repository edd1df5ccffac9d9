"""Checkpoint selection on a validation bank: an instrument set the autoencoder never trains on.

Family precision on the training banks' validation split keeps rising while precision on unheard
banks stalls or falls (the model learns its banks), so the kept autoencoder is the EMA checkpoint
with the best family precision@5 on clean clips of ``CorpusConfig.selection_bank`` (programs that
share a sample with a training bank removed). The cross-bank test banks are never used here.
"""

from __future__ import annotations

import copy

import torch

from service.ml.audio import MelFrontEnd
from service.ml.config import Preset
from service.ml.data import corpus
from service.ml.data.banks import BANKS, CROSS_BANK_TEST, SECOND_TEST
from service.ml.data.instruments import FAMILY_NAMES
from service.ml.model.autoencoder import AutoEncoder
from service.ml.training.batches import log_mel
from service.ml.training.validation import encode_global, precision_at

CLIPS_PER_FAMILY = 16
SELECTION_SEED = 1  # melodies other than the evaluation's (seed 0)
FIRST_CANDIDATE = 0.5  # only the second half of the run competes: the decoder and the cycle need the steps
TOLERANCE = 0.015  # about one standard error of P@5 on 176 clips: within it, the later checkpoint wins


class CheckpointSelector:
    def __init__(self, preset: Preset, frontend: MelFrontEnd) -> None:
        self.bank_name = preset.corpus.selection_bank
        self.log_mel, self.families = _clips(preset, frontend) if self.bank_name else (None, None)
        self.best_score, self.best_step, self.best_state = -1.0, 0, None

    @property
    def active(self) -> bool:
        return self.log_mel is not None

    @torch.no_grad()
    def offer(self, model: AutoEncoder, step: int, steps: int) -> dict[str, float]:
        """Score ``model`` and keep a copy of its weights if it is a candidate within ``TOLERANCE`` of the best
        score so far: a noisy gain of 0.01 is not worth the reconstruction the later steps bring."""
        if not self.active:
            return {}
        score = precision_at(encode_global(model, self.log_mel), self.families)
        if step >= FIRST_CANDIDATE * steps and score >= self.best_score - TOLERANCE:
            self.best_step, self.best_state = step, copy.deepcopy(model.state_dict())
            self.best_score = max(self.best_score, score)
        return {f"{self.bank_name}_family_p5": score}

    def apply_best(self, model: AutoEncoder) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state(self) -> dict:
        return {"score": self.best_score, "step": self.best_step, "weights": self.best_state}

    def restore(self, state: dict | None) -> None:
        if state:
            self.best_score, self.best_step, self.best_state = state["score"], state["step"], state["weights"]


def _clips(preset: Preset, frontend: MelFrontEnd) -> tuple[torch.Tensor, torch.Tensor]:
    name = preset.corpus.selection_bank
    if name in (CROSS_BANK_TEST, SECOND_TEST) or name in preset.corpus.held_out_banks:
        raise ValueError(f"selection_bank={name!r} is a test bank; choose a bank that is neither trained nor tested")
    if name in preset.corpus.banks:
        raise ValueError(f"selection_bank={name!r} is a training bank; choose one the model never hears")
    bank = BANKS[name]
    if not bank.available():
        raise RuntimeError(f"selection_bank={name!r} needs {bank.source}, which is not installed here")
    training = [BANKS[b] for b in preset.corpus.banks]
    clips, _ = corpus.render_clean_clips(bank, training, CLIPS_PER_FAMILY, preset.model, SELECTION_SEED)
    families = torch.tensor([FAMILY_NAMES.index(label.family) for label in clips.labels])
    return log_mel(clips.audio, frontend), families

"""Validation during training, on the validation split (unseen melodies, training banks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from service.ml.audio import MelFrontEnd
from service.ml.config import ModelConfig, Preset
from service.ml.data.corpus import Corpus
from service.ml.model.autoencoder import AutoEncoder
from service.ml.model.diffusion import Denoiser
from service.ml.tags import labels_to_slot_ids
from service.ml.training.batches import log_mel
from service.ml.training.losses import denoiser_loss

CHUNK = 128
OFFSET_SECONDS = 0.25


@dataclass
class ValidationSet:
    log_mel: torch.Tensor  # first clip_seconds of every clip
    shifted: torch.Tensor  # the same clips started OFFSET_SECONDS late
    slot_ids: torch.Tensor

    @classmethod
    def of(cls, clips: Corpus, frontend: MelFrontEnd, config: ModelConfig) -> ValidationSet:
        audio = clips.audio[:, : config.n_samples]
        delay = int(OFFSET_SECONDS * config.sample_rate)
        shifted = np.zeros_like(audio)
        shifted[:, delay:] = audio[:, : config.n_samples - delay]
        ids = [labels_to_slot_ids(c.family, c.mode, c.bpm, c.drums) for c in clips.labels]
        return cls(log_mel(audio, frontend), log_mel(shifted, frontend), torch.tensor(ids, dtype=torch.long))


@torch.no_grad()
def encode_global(model: AutoEncoder, log_mels: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.encode_global(log_mels[i : i + CHUNK]) for i in range(0, len(log_mels), CHUNK)])


@torch.no_grad()
def encode_joint(model: AutoEncoder, clips: Corpus, frontend: MelFrontEnd, config: ModelConfig) -> torch.Tensor:
    """(n, joint_dim) latents of the first clip_seconds of every clip."""
    out = []
    for i in range(0, len(clips.labels), CHUNK):
        mel = log_mel(clips.audio[i : i + CHUNK, : config.n_samples], frontend)
        out.append(torch.cat([model.encode_global(mel), model.encode_content(mel)], dim=1))
    return torch.cat(out)


def precision_at(latents: torch.Tensor, classes: torch.Tensor, k: int = 5) -> float:
    unit = F.normalize(latents, dim=-1)
    similarity = (unit @ unit.T).fill_diagonal_(-2.0)
    neighbours = similarity.topk(k, dim=1).indices
    return float((classes[neighbours] == classes[:, None]).float().mean())


@torch.no_grad()
def autoencoder(model: AutoEncoder, val: ValidationSet) -> dict[str, float]:
    g = encode_global(model, val.log_mel)
    g_shifted = encode_global(model, val.shifted)
    content = torch.cat([model.encode_content(val.log_mel[i : i + CHUNK]) for i in range(0, len(g), CHUNK)])
    decoded = torch.cat([model.decode(g[i : i + CHUNK], content[i : i + CHUNK]) for i in range(0, len(g), CHUNK)])
    families = val.slot_ids[:, 0] - 1
    nearest = (F.normalize(g_shifted, dim=-1) @ F.normalize(g, dim=-1).T).argmax(1)
    return {
        "val_log_mel_l1": float(F.l1_loss(decoded, val.log_mel)),
        "val_family_accuracy": float((model.label_logits(g)["family"].argmax(-1) == families).float().mean()),
        "val_family_p5": precision_at(g, families),
        "val_self_after_250ms": float((nearest == torch.arange(len(g))).float().mean()),
    }


@torch.no_grad()
def denoiser(model: Denoiser, latents: torch.Tensor, slot_ids: torch.Tensor, preset: Preset) -> dict[str, float]:
    generator = torch.Generator().manual_seed(1234)
    losses = [denoiser_loss(model, latents, slot_ids, preset, generator) for _ in range(4)]
    return {"val_v_mse": float(torch.stack(losses).mean())}


@torch.no_grad()
def in_domain_scores(model: AutoEncoder, val: ValidationSet) -> np.ndarray:
    return torch.sigmoid(model.in_domain_logit(encode_global(model, val.log_mel))).numpy()

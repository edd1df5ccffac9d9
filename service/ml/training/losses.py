"""The training objectives of the autoencoder and the denoiser."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from service.ml.config import Preset
from service.ml.model.autoencoder import GLOBAL_HEADS, LABEL_HEADS, AutoEncoder
from service.ml.model.diffusion import Denoiser, alpha_sigma
from service.ml.training.batches import Batch, slot_targets


def supervised_contrastive(z: torch.Tensor, classes: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SupCon (Khosla et al. 2020): cosine neighbours of a latent should share its class."""
    unit = F.normalize(z, dim=-1)
    self_mask = torch.eye(len(z), dtype=torch.bool)
    logits = (unit @ unit.T / temperature).masked_fill(self_mask, -1e9)
    positives = (classes[:, None] == classes[None, :]) & ~self_mask
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    has_positive = positives.any(dim=1)
    mean_positive = (log_prob * positives).sum(1)[has_positive] / positives.sum(1)[has_positive]
    return -mean_positive.mean()


def as_heard(decoded: torch.Tensor, original: torch.Tensor, model: AutoEncoder) -> torch.Tensor:
    """The log-mel the encoder will see once the decoder's (standardised) output is audio again: encoding
    normalises loudness, which shifts a log-mel by a constant."""
    log_mel = model.unstandardise(decoded)
    energy = torch.logsumexp(original.flatten(1), dim=1) - torch.logsumexp(log_mel.flatten(1), dim=1)
    return log_mel + energy[:, None, None]


def autoencoder_loss(model: AutoEncoder, batch: Batch, preset: Preset, generator: torch.Generator):
    """Returns (total, reconstruction L1, parts) for one batch.

    - swap reconstruction: A's content with B's global latent must give B, and the other way round;
    - family SupCon over A, B and the shifted views, plus an instance term (a view's nearest latent is its
      own A), so the global latent groups by instrument yet still tells clips apart;
    - label heads (family, drums on the global; mode, tempo on the content) and the in-domain head
      (renders against synthetic non-music);
    - cycle: the decoded log-mel encodes back to the global latent it was decoded from.
    """
    train, n = preset.train, len(batch.log_mel_a)
    standardised = [model.standardise(x) for x in (batch.log_mel_a, batch.log_mel_b)]
    g_all = model.global_encoder(
        torch.cat([*standardised, model.standardise(batch.log_mel_view), model.standardise(batch.log_mel_negative)])
    )
    g_a, g_b, g_view, g_negative = g_all[:n], g_all[n : 2 * n], g_all[2 * n : 3 * n], g_all[3 * n :]
    content = model.content_encoder(torch.cat(standardised))
    jitter = torch.randn((2 * n, g_a.shape[1]), generator=generator) * train.latent_noise
    content_jitter = torch.randn(content.shape, generator=generator) * train.content_noise
    decoded = model.decoder(torch.cat([g_b, g_a]) + jitter, content + content_jitter)
    target = torch.cat(standardised[::-1])
    reconstruction = F.l1_loss(decoded, target)

    ids = torch.cat([batch.ids_a, batch.ids_b])
    music = torch.cat([g_a, g_b, g_view])
    families = torch.cat([ids[:, 0], batch.ids_a[:, 0]])
    contrastive = supervised_contrastive(music, families)
    instance = info_nce(g_view, torch.cat([g_a, g_b]))
    labels = _label_loss(model, music, content.flatten(1), ids, batch.ids_a)
    in_domain = _in_domain_loss(model, music, g_negative)
    originals = torch.cat([batch.log_mel_b, batch.log_mel_a])
    cycle = (
        1.0
        - F.cosine_similarity(
            model.encode_global(as_heard(decoded, originals, model)), torch.cat([g_b, g_a]).detach(), dim=-1
        ).mean()
    )
    total = (
        train.swap_weight * reconstruction
        + train.contrastive_weight * contrastive
        + train.instance_weight * instance
        + train.label_weight * (labels + in_domain)
        + train.cycle_weight * cycle
    )
    parts = {"contrastive": contrastive.item(), "instance": instance.item(), "cycle": cycle.item()}
    return total, reconstruction, parts


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Query i's positive is key i; every other key is a negative."""
    logits = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(queries)))


def _label_loss(model: AutoEncoder, music: torch.Tensor, content: torch.Tensor, ids: torch.Tensor, ids_view):
    targets = slot_targets(ids)
    global_targets = slot_targets(torch.cat([ids, ids_view]))
    logits = model.label_logits(music, content)
    loss = sum(F.cross_entropy(logits[name], global_targets[name]) for name in GLOBAL_HEADS)
    return loss + sum(F.cross_entropy(logits[name], targets[name]) for name in LABEL_HEADS if name not in GLOBAL_HEADS)


def _in_domain_loss(model: AutoEncoder, music: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    logits = model.in_domain_logit(torch.cat([music, negatives]))
    targets = torch.cat([torch.ones(len(music)), torch.zeros(len(negatives))])
    weights = torch.cat(
        [torch.full((len(music),), 0.5 / len(music)), torch.full((len(negatives),), 0.5 / len(negatives))]
    )
    return (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weights).sum()


def denoiser_loss(
    model: Denoiser, latents: torch.Tensor, slot_ids: torch.Tensor, preset: Preset, generator: torch.Generator
) -> torch.Tensor:
    """v-prediction MSE; tag slots are dropped (set to 0) at random for classifier-free guidance."""
    batch = latents.shape[0]
    t = torch.rand(batch, generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    alpha, sigma = (s[:, None] for s in alpha_sigma(t))
    drop_slot = torch.rand(slot_ids.shape, generator=generator) < preset.train.cond_drop_slot
    drop_all = torch.rand(batch, 1, generator=generator) < preset.train.cond_drop_all
    ids = slot_ids.masked_fill(drop_slot | drop_all, 0)
    prediction = model(alpha * latents + sigma * noise, t, ids)
    return F.mse_loss(prediction, alpha * noise - sigma * latents)

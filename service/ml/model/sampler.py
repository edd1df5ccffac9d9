"""Deterministic DDIM sampling (eta = 0) with classifier-free guidance, from pure or partial noise.

All tensors here live in the *standardised* latent space the denoiser was
trained in. Starting at ``t_start < 1`` from a noised copy of a known latent is
the partial-noise path behind variants and style transfer (SDEdit / ACE-Step
retake).
"""

from __future__ import annotations

import torch

from service.ml.model.diffusion import Denoiser, alpha_sigma


def seeded_noise(seeds: list[int], dim: int) -> torch.Tensor:
    """One standard-normal vector per seed, independent of batch composition."""
    return torch.stack([torch.randn(dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def add_noise(clean: torch.Tensor, noise: torch.Tensor, t: float) -> torch.Tensor:
    alpha, sigma = alpha_sigma(torch.tensor(t))
    return alpha * clean + sigma * noise


@torch.inference_mode()
def ddim(
    denoiser: Denoiser,
    z: torch.Tensor,
    slot_ids: torch.Tensor,
    steps: int,
    guidance_scale: float,
    t_start: float = 1.0,
) -> torch.Tensor:
    """Integrate from ``t_start`` down to 0 in ``steps`` uniform steps; returns the clean estimate."""
    times = torch.linspace(t_start, 0.0, steps + 1)
    null_ids = torch.zeros_like(slot_ids)
    guided = guidance_scale != 1.0 and bool(slot_ids.any())
    for t_now, t_next in zip(times[:-1], times[1:], strict=True):
        v = _velocity(denoiser, z, t_now, slot_ids, null_ids, guidance_scale, guided)
        alpha, sigma = alpha_sigma(t_now)
        clean = alpha * z - sigma * v
        noise = sigma * z + alpha * v
        alpha_next, sigma_next = alpha_sigma(t_next)
        z = alpha_next * clean + sigma_next * noise
    return z


def _velocity(denoiser, z, t, slot_ids, null_ids, guidance_scale, guided) -> torch.Tensor:
    batch = z.shape[0]
    if not guided:
        return denoiser(z, t.expand(batch), slot_ids)
    both = denoiser(torch.cat([z, z]), t.expand(2 * batch), torch.cat([slot_ids, null_ids]))
    conditional, unconditional = both[:batch], both[batch:]
    return unconditional + guidance_scale * (conditional - unconditional)

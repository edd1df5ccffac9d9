"""Latent diffusion over the joint (global, content) latent of the autoencoder.

The joint vector is cut into tokens of ``token_dim`` numbers; a small transformer with
linear attention (plain torch) predicts v (Salimans & Ho) under a cosine noise
schedule. Time and tags condition every block through adaptive layer norm
(DiT's adaLN); the tag embedding is the sum of one learned embedding per slot,
where id 0 is the null condition used for classifier-free guidance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from service.ml.config import ModelConfig
from service.ml.tags import SLOT_SIZES, SLOTS


def alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine schedule: signal and noise scales at time t in [0, 1]."""
    return torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = 1000.0 * t[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class LinearAttention(nn.Module):
    """Non-causal linear attention with elu+1 feature maps: O(tokens) instead of O(tokens^2)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).unbind(dim=2)
        q, k = F.elu(q) + 1, F.elu(k) + 1
        context = torch.einsum("bnhd,bnhe->bhde", k, v)
        normaliser = 1.0 / (torch.einsum("bnhd,bhd->bnh", q, k.sum(dim=1)) + 1e-6)
        y = torch.einsum("bnhd,bhde,bnh->bnhe", q, context, normaliser)
        return self.out(y.reshape(b, n, w))


class Block(nn.Module):
    """Pre-norm transformer block modulated (shift, scale, gate) by the conditioning vector."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attention = LinearAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c))[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.attention(_modulate(x, shift1, scale1))
        return x + gate2 * self.mlp(_modulate(x, shift2, scale2))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:]) * (1 + scale) + shift


class Denoiser(nn.Module):
    """v-prediction network: (noisy joint latent, t, slot ids) -> v, all (batch, joint_dim)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.dit_width
        self.token_dim = config.token_dim
        self.tokens = config.joint_dim // config.token_dim
        self.embed = nn.Linear(self.token_dim, width)
        self.position = nn.Parameter(torch.randn(1, self.tokens, width) * 0.02)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.tags = nn.ModuleList([nn.Embedding(SLOT_SIZES[slot], width) for slot in SLOTS])
        self.blocks = nn.ModuleList([Block(width, config.dit_heads) for _ in range(config.dit_depth)])
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.unembed = nn.Linear(width, self.token_dim)
        nn.init.zeros_(self.unembed.weight)
        nn.init.zeros_(self.unembed.bias)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, slot_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(z_t.view(-1, self.tokens, self.token_dim)) + self.position
        c = self.time(timestep_embedding(t, x.shape[-1]))
        c = c + sum(embedding(slot_ids[:, i]) for i, embedding in enumerate(self.tags))
        for block in self.blocks:
            x = block(x, c)
        return self.unembed(self.final_norm(x)).flatten(1)

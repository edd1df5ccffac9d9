"""Log-mel autoencoder: one clip's (n_mels, n_frames) log-mel <-> one latent vector.

1-D convolutions over time with mel bins as channels keep a training step far
under the 0.2 s budget on 2 CPU cores. The latent is layer-normalised (no
affine), so every latent has norm sqrt(latent_dim): cosine retrieval and the
diffusion prior both see unit-scale coordinates. Linear label heads on the
latent (family, mode, tempo class, drums) make "sounds like" mean same
instrument first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from service.ml.config import ModelConfig
from service.ml.tags import SLOT_SIZES

LABEL_HEADS = ("family", "mode", "tempo", "drums")


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.conv = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.gelu(self.norm(x)))


def level_channels(config: ModelConfig) -> list[int]:
    """Channels per time resolution, finest first: narrow where there are many frames (the cost)."""
    widths = [config.ae_channels // 4, config.ae_channels // 2] + [config.ae_channels] * config.ae_downsamples
    return [max(w, 16) for w in widths[: config.ae_downsamples + 1]]


class Encoder(nn.Module):
    """(batch, n_mels, n_frames) -> (batch, latent_dim), layer-normalised."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths = level_channels(config)
        c = widths[-1]
        self.stem = nn.Conv1d(config.n_mels, widths[0], 3, padding=1)
        self.down = nn.Sequential(
            *[
                nn.Sequential(ResidualBlock(w_in), nn.Conv1d(w_in, w_out, 4, stride=2, padding=1))
                for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        frames = config.n_frames // 2**config.ae_downsamples
        self.squeeze = nn.Conv1d(c, config.latent_dim // frames, 1)
        self.project = nn.Linear(config.latent_dim, config.latent_dim)
        self.pooled = nn.Linear(c, config.latent_dim)
        self.latent_dim = config.latent_dim

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        h = self.down(self.stem(log_mel))
        z = self.project(self.squeeze(F.gelu(h)).flatten(1)) + self.pooled(h.mean(dim=-1))
        return F.layer_norm(z, (self.latent_dim,))


class Decoder(nn.Module):
    """(batch, latent_dim) -> (batch, n_mels, n_frames) log-mel."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths = level_channels(config)[::-1]
        self.frames = config.n_frames // 2**config.ae_downsamples
        self.channels = widths[0]
        self.expand = nn.Linear(config.latent_dim, widths[0] * self.frames)
        self.up = nn.Sequential(
            *[
                nn.Sequential(
                    nn.ConvTranspose1d(w_in, w_out, 4, stride=2, padding=1),
                    *[ResidualBlock(w_out) for _ in range(config.ae_decoder_blocks)],
                )
                for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.out = nn.Sequential(
            nn.GroupNorm(8, widths[-1]), nn.GELU(), nn.Conv1d(widths[-1], config.n_mels, 3, padding=1)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.expand(z).view(-1, self.channels, self.frames)
        return self.out(self.up(h))


class AutoEncoder(nn.Module):
    """Encoder + decoder + label heads; log-mel values are standardised by stored statistics."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.heads = nn.ModuleDict({name: nn.Linear(config.latent_dim, SLOT_SIZES[name] - 1) for name in LABEL_HEADS})
        self.register_buffer("mel_mean", torch.zeros(config.n_mels, 1))
        self.register_buffer("mel_std", torch.ones(config.n_mels, 1))

    def standardise(self, log_mel: torch.Tensor) -> torch.Tensor:
        return (log_mel - self.mel_mean) / self.mel_std

    def unstandardise(self, standardised: torch.Tensor) -> torch.Tensor:
        return standardised * self.mel_std + self.mel_mean

    def encode(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.standardise(log_mel))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.unstandardise(self.decoder(z))

    def label_logits(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(z) for name, head in self.heads.items()}

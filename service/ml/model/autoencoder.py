"""Log-mel autoencoder with a split latent: a time-pooled *global* vector and a short *content* sequence.

- ``GlobalEncoder``: 1-D convolutions over time (mel bins as channels), then attentive mean + standard
  deviation pooling over every frame, concatenated with the clip's plain log-mel mean and standard
  deviation per band, projected to ``latent_dim`` and layer-normalised. Pooling over time makes it
  (nearly) independent of where the music starts; it is the vector the service stores and searches.
- ``ContentEncoder``: strided convolutions down to ``content_frames`` steps of ``content_channels``:
  what is played when (melody, rhythm). Training decodes one render's content with another render's
  global latent, so timbre has to live in the global vector and notes in the content.
- ``Decoder``: content upsampled back to frames, modulated at every resolution by the global vector.

Label heads read the global latent (family, drums, in-domain) and the content (mode, tempo).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from service.ml.config import ModelConfig
from service.ml.tags import SLOT_SIZES

GLOBAL_HEADS = ("family", "drums")
CONTENT_HEADS = ("mode", "tempo")
LABEL_HEADS = GLOBAL_HEADS + CONTENT_HEADS


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.gelu(self.norm(x)))


class AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and standard deviation over time (ECAPA-TDNN style)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(nn.Conv1d(channels, 64, 1), nn.Tanh(), nn.Conv1d(64, channels, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.attention(h), dim=-1)
        mean = (weights * h).sum(-1)
        std = ((weights * h * h).sum(-1) - mean * mean).clamp(min=1e-5).sqrt()
        return torch.cat([mean, std], dim=-1)


def band_statistics(log_mel: torch.Tensor) -> torch.Tensor:
    """(batch, 2 * n_mels): each band's mean and standard deviation over time (the classic DSP summary)."""
    return torch.cat([log_mel.mean(-1), log_mel.std(-1)], dim=-1)


class GlobalEncoder(nn.Module):
    """(batch, n_mels, frames) standardised log-mel -> (features, latent); any number of frames."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config.global_channels
        self.stem = nn.Conv1d(config.n_mels, c, 4, stride=2, padding=1)  # 32 frames per second are plenty
        self.blocks = nn.Sequential(*[ResidualBlock(c, dilation=2**i) for i in range(config.global_blocks)])
        self.pool = AttentiveStatsPool(c)
        self.project = nn.Sequential(
            nn.Linear(2 * c + 2 * config.n_mels, 2 * config.latent_dim),
            nn.GELU(),
            nn.Linear(2 * config.latent_dim, config.latent_dim),
        )
        self.latent_dim = config.latent_dim

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.blocks(self.stem(log_mel)))
        pooled = torch.cat([self.pool(h), band_statistics(log_mel)], dim=-1)
        return F.layer_norm(self.project(pooled), (self.latent_dim,))


def level_channels(config: ModelConfig) -> list[int]:
    """Channels per time resolution, finest first: narrow where there are many frames (the cost)."""
    widths = [config.ae_channels // 4, config.ae_channels // 2] + [config.ae_channels] * config.ae_downsamples
    return [max(w, 16) for w in widths[: config.ae_downsamples + 1]]


class ContentEncoder(nn.Module):
    """(batch, n_mels, n_frames) -> (batch, content_channels, content_frames)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths = level_channels(config)
        self.stem = nn.Conv1d(config.n_mels, widths[0], 3, padding=1)
        self.down = nn.Sequential(
            *[
                nn.Sequential(ResidualBlock(w_in), nn.Conv1d(w_in, w_out, 4, stride=2, padding=1))
                for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.out = nn.Conv1d(widths[-1], config.content_channels, 1)
        self.norm = config.content_norm

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        content = self.out(F.gelu(self.down(self.stem(log_mel))))
        if self.norm == "tanh":
            return torch.tanh(content)
        return unit_rms(content)


def unit_rms(x: torch.Tensor) -> torch.Tensor:
    """Scale each item to a root mean square of 1 over all its values: a fixed scale for the denoiser with no
    saturation (a tanh content code drifted to +-1 and stopped learning)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=tuple(range(1, x.dim())), keepdim=True) + 1e-6)


class FiLMBlock(nn.Module):
    """Upsample x2, then residual blocks whose normalised activations are scaled and shifted by the global."""

    def __init__(self, w_in: int, w_out: int, blocks: int, latent_dim: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose1d(w_in, w_out, 4, stride=2, padding=1)
        self.blocks = nn.ModuleList([ResidualBlock(w_out) for _ in range(blocks)])
        self.film = nn.Linear(latent_dim, 2 * w_out)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(g)[..., None].chunk(2, dim=1)
        x = self.up(x) * (1 + scale) + shift
        for block in self.blocks:
            x = block(x)
        return x


class Decoder(nn.Module):
    """(global (batch, latent_dim), content (batch, content_channels, content_frames)) -> log-mel."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths = level_channels(config)[::-1]
        self.content_in = nn.Conv1d(config.content_channels, widths[0], 3, padding=1)
        self.global_in = nn.Linear(config.latent_dim, widths[0])
        self.up = nn.ModuleList(
            [
                FiLMBlock(w_in, w_out, config.ae_decoder_blocks, config.latent_dim)
                for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.out = nn.Sequential(
            nn.GroupNorm(8, widths[-1]), nn.GELU(), nn.Conv1d(widths[-1], config.n_mels, 3, padding=1)
        )

    def forward(self, g: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        h = self.content_in(content) + self.global_in(g)[..., None]
        for block in self.up:
            h = block(h, g)
        return self.out(h)


class AutoEncoder(nn.Module):
    """Encoders + decoder + heads; log-mel values are standardised by stored statistics."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.global_encoder = GlobalEncoder(config)
        self.content_encoder = ContentEncoder(config)
        self.decoder = Decoder(config)
        self.heads = nn.ModuleDict({name: nn.Linear(config.latent_dim, SLOT_SIZES[name] - 1) for name in GLOBAL_HEADS})
        self.heads.update({name: nn.Linear(config.content_dim, SLOT_SIZES[name] - 1) for name in CONTENT_HEADS})
        self.in_domain = nn.Sequential(nn.Linear(config.latent_dim, 128), nn.GELU(), nn.Linear(128, 1))
        self.register_buffer("mel_mean", torch.zeros(config.n_mels, 1))
        self.register_buffer("mel_std", torch.ones(config.n_mels, 1))

    def standardise(self, log_mel: torch.Tensor) -> torch.Tensor:
        return (log_mel - self.mel_mean) / self.mel_std

    def unstandardise(self, standardised: torch.Tensor) -> torch.Tensor:
        return standardised * self.mel_std + self.mel_mean

    def encode_global(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.global_encoder(self.standardise(log_mel))

    def encode_content(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.content_encoder(self.standardise(log_mel)).flatten(1)

    def decode(self, g: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        return self.unstandardise(self.decoder(g, self.unflatten(content)))

    def unflatten(self, content: torch.Tensor) -> torch.Tensor:
        return content.view(-1, self.config.content_channels, self.config.content_frames)

    def label_logits(self, g: torch.Tensor, content: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = {name: self.heads[name](g) for name in GLOBAL_HEADS}
        if content is not None:
            logits.update({name: self.heads[name](content) for name in CONTENT_HEADS})
        return logits

    def in_domain_logit(self, g: torch.Tensor) -> torch.Tensor:
        return self.in_domain(g).squeeze(-1)

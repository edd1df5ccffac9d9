"""Configuration dataclasses and the named training presets.

``ModelConfig`` is saved inside every checkpoint so a model rebuilds from its
file alone; ``CorpusConfig`` and ``TrainConfig`` are saved next to it for the
record (the model card quotes them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ModelConfig:
    # audio front end
    sample_rate: int = 16_000
    clip_seconds: float = 4.0
    n_fft: int = 1024
    hop_length: int = 250
    n_mels: int = 64
    griffin_lim_iters: int = 12  # fast Griffin-Lim: 16 gave the same cycle cosine (0.9727 vs 0.9727) and decoded slower
    # autoencoder
    latent_dim: int = 512
    ae_channels: int = 192
    ae_downsamples: int = 4
    ae_decoder_blocks: int = 2  # residual blocks per decoder resolution (older checkpoints: LEGACY_MODEL_FIELDS)
    # diffusion denoiser
    latent_tokens: int = 16
    dit_width: int = 192
    dit_depth: int = 4
    dit_heads: int = 4
    default_steps: int = 25
    default_guidance: float = 0.6  # chosen by evaluation: diversity and conditioning both met (model card)
    default_strength: float = 0.6

    @property
    def n_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def n_frames(self) -> int:
        return self.n_samples // self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Rebuild a checkpoint's config; fields it predates take the value that matches its weights."""
        return cls(**{**LEGACY_MODEL_FIELDS, **values})


# What a checkpoint written before a field existed was trained with.
LEGACY_MODEL_FIELDS = {"ae_decoder_blocks": 1}


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = 0
    train_melodies: int = 900
    val_melodies: int = 40
    test_melodies: int = 100
    renders_per_melody: int = 6
    eval_renders_per_melody: int = 4
    soundfont: str = "merlin"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 32
    ae_steps: int = 10000
    diffusion_steps: int = 4000
    ae_lr: float = 1e-3
    diffusion_lr: float = 6e-4
    ema_decay: float = 0.999
    latent_noise: float = 0.1
    label_loss_weight: float = 0.5
    cycle_loss_weight: float = 0.2  # 0.5 until default-202611220931-s0; lighter leaves room for reconstruction
    cond_drop_all: float = 0.1
    cond_drop_slot: float = 0.3
    validate_every: int = 500
    checkpoint_every: int = 1000

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Preset:
    name: str
    model: ModelConfig
    corpus: CorpusConfig
    train: TrainConfig = field(default_factory=TrainConfig)


PRESETS: dict[str, Preset] = {
    "default": Preset("default", ModelConfig(), CorpusConfig(), TrainConfig()),
    "tiny": Preset(
        "tiny",
        ModelConfig(ae_channels=64, dit_width=64, dit_depth=2, dit_heads=2, griffin_lim_iters=8, default_steps=10),
        CorpusConfig(
            train_melodies=40,
            val_melodies=6,
            test_melodies=8,
            renders_per_melody=3,
            eval_renders_per_melody=2,
        ),
        TrainConfig(
            batch_size=32,
            ae_steps=250,
            diffusion_steps=250,
            ema_decay=0.95,
            validate_every=125,
            checkpoint_every=250,
        ),
    ),
}

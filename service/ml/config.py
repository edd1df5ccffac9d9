"""Configuration dataclasses and the named training presets.

``ModelConfig`` is saved inside every checkpoint so a model rebuilds from its
file alone; ``CorpusConfig`` and ``TrainConfig`` are saved next to it for the
record (the model card quotes them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ARCHITECTURE = "global-content/1"
TRAINING_BANKS = (
    "merlin",
    "a320u",
    "opl3",
    "generalusergs",
    "jclive",
    "chaos",
    "sblive",
    "soundblasterold",
    "tonejs",
)
HELD_OUT_BANKS = ("fluidr3", "fluidr3_waf", "aspirin")


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = ARCHITECTURE
    # audio front end
    sample_rate: int = 16_000
    clip_seconds: float = 4.0
    n_fft: int = 1024
    hop_length: int = 250
    n_mels: int = 64
    griffin_lim_iters: int = 12
    # global latent: the searched vector, pooled over time
    latent_dim: int = 512
    global_channels: int = 128
    global_blocks: int = 3
    # content latent: melody and rhythm, (content_channels, n_frames / 2**ae_downsamples)
    content_channels: int = 32
    # "rms": scaled to unit RMS per clip (cannot saturate); "tanh": squashed (checkpoints before 2026-11-29 10:00)
    content_norm: str = "rms"
    ae_channels: int = 192
    ae_downsamples: int = 4
    ae_decoder_blocks: int = 2
    # long files: windows of clip_seconds every window_hop_seconds, pooled
    window_hop_seconds: float = 2.0
    # diffusion denoiser over the joint (global, content) vector
    token_dim: int = 32
    dit_width: int = 192
    dit_depth: int = 4
    dit_heads: int = 4
    default_steps: int = 25
    default_guidance: float = 1.0  # chosen by evaluation: conditioning 0.938, diversity 0.679 (0.6: 0.792 / 1.096)
    default_strength: float = 0.6  # chosen by evaluation: neighbour family 0.87, pattern kept 0.75 (0.8: 0.98 / 0.66)

    @property
    def n_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def n_frames(self) -> int:
        return self.n_samples // self.hop_length

    @property
    def content_frames(self) -> int:
        return self.n_frames // 2**self.ae_downsamples

    @property
    def content_dim(self) -> int:
        return self.content_channels * self.content_frames

    @property
    def joint_dim(self) -> int:
        return self.latent_dim + self.content_dim

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        if values.get("architecture") != ARCHITECTURE:
            raise ValueError(
                f"checkpoint architecture {values.get('architecture', 'flat-latent (2026-11)')!r} is not supported "
                f"by this version (expects {ARCHITECTURE!r})"
            )
        return cls(**{"content_norm": "tanh", **values})


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = 0
    train_scenes: int = 5000
    val_scenes: int = 120
    renders_per_scene: int = 4
    banks: tuple[str, ...] = TRAINING_BANKS
    held_out_banks: tuple[str, ...] = HELD_OUT_BANKS
    margin_seconds: float = 0.5
    mixture_probability: float = 0.15
    augment_probability: float = 0.7
    # the autoencoder checkpoint kept is the one with the best family precision@5 on this bank (clean programs)
    selection_bank: str | None = None
    # (bank, weight) pairs: how often a bank's programs lead a render against the others' (1 when not named)
    bank_weights: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    batch_scenes: int = 16  # two renders of each scene per step
    ae_steps: int = 12000
    diffusion_steps: int = 5000
    ae_lr: float = 1e-3
    diffusion_lr: float = 6e-4
    ema_decay: float = 0.999
    latent_noise: float = 0.1
    content_noise: float = 0.1  # Gaussian noise on the unit-RMS content the decoder reads while training
    contrastive_weight: float = 1.0
    instance_weight: float = 0.5
    label_weight: float = 0.5
    swap_weight: float = 1.0
    cycle_weight: float = 0.2
    negatives_per_batch: int = 6  # synthetic non-music clips (noise, tones, buzz) for the in-domain head
    speech_negatives: int = 0  # of those, spoken by espeak-ng in voices and sentences the evaluation never uses
    max_offset_seconds: float = 0.5
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
    "default": Preset(
        "default",
        # default_strength chosen by evaluation: at 0.6 the probe heard the neighbour in 0.72 of transfers, at
        # 0.8 in 0.96, the source's pattern kept in 1.00 at both (docs/model-card.md)
        ModelConfig(content_channels=16, ae_downsamples=3, default_strength=0.8),
        CorpusConfig(selection_bank="timgm6mb", train_scenes=6000, bank_weights=(("tonejs", 4.0),)),
        TrainConfig(ae_steps=20000, speech_negatives=2),
    ),
    "tiny": Preset(
        "tiny",
        ModelConfig(
            global_channels=48,
            global_blocks=2,
            ae_channels=64,
            dit_width=64,
            dit_depth=2,
            dit_heads=2,
            griffin_lim_iters=8,
            default_steps=10,
        ),
        CorpusConfig(train_scenes=60, val_scenes=8, renders_per_scene=3, banks=("merlin",), held_out_banks=()),
        TrainConfig(
            batch_scenes=12,
            ae_steps=250,
            diffusion_steps=250,
            ema_decay=0.95,
            validate_every=125,
            checkpoint_every=250,
            negatives_per_batch=4,
        ),
    ),
}

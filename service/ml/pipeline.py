"""The model as the service sees it: load a checkpoint, encode, decode, generate, vary, transfer.

Interface (all arrays are numpy float32; latents are 512-d, on the sphere of
radius sqrt(512) because the encoder layer-normalises them)::

    from service.ml.pipeline import Pipeline, default_checkpoint_path
    p = Pipeline.load(default_checkpoint_path())   # rebuilt from the file alone; eval(), inference mode
    p.config.sample_rate, p.config.clip_seconds, p.config.latent_dim
    p.known_tags() -> list[str]
    p.parse_prompt("piano, minor, 90 bpm") -> ParsedPrompt      # PromptError lists close known tags
    p.generate(prompts, seeds, steps, guidance_scale) -> (n, 512)
    p.decode(latents (n, 512)) -> (n, n_samples) waveforms in [-1, 1]
    p.encode(audio, sample_rate) -> (512,)                       # any length / supported rate
    p.encode_batch(list_of_arrays, sample_rate) -> (n, 512)
    p.variants(latent, variance, seeds) -> (n, 512)              # partial noise, variance in [0, 1]
    p.transfer(source_latent, style_latent, strength, seed, style_tags=None) -> (512,)
    p.predict_tags(latent) -> list[str]                           # family, mode, tempo, drums
    p.sha256, p.version

``encode`` averages channels, resamples to ``config.sample_rate``, keeps the
first ``config.clip_seconds`` (crops longer input, zero-pads shorter input) and
normalises loudness. Bad input raises the ``ValueError`` subclasses of
``service.ml.errors`` naming the field, the value and the allowed range.

Determinism: every random draw comes from a generator seeded by the caller's
seed (Griffin-Lim's initial phase from a fixed seed), so fixed seeds give
byte-identical latents and audio on the same machine and thread count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from service.ml import checkpoint, sampler
from service.ml.audio import MelFrontEnd, prepare
from service.ml.autoencoder import AutoEncoder
from service.ml.config import ModelConfig
from service.ml.diffusion import Denoiser
from service.ml.errors import ParameterRangeError, check_range
from service.ml.instruments import FAMILY_NAMES
from service.ml.music import MODES
from service.ml.tags import DRUM_TAGS, SLOTS, TEMPO_CLASSES, ParsedPrompt, known_tags, parse_prompt

MAX_STEPS = 200
GUIDANCE_RANGE = (0.0, 20.0)
MAX_BATCH = 256
GRIFFIN_LIM_SEED = 0
# Style transfer at strength s moves the source by TRANSFER_GAIN * s times the difference between the mean
# training latents of the two families, then re-noises it to diffusion time TRANSFER_NOISE * s and denoises it
# towards the style's tags (model card: the family moves with the shift, the melody stays with the residual).
TRANSFER_GAIN, TRANSFER_NOISE = 1.5, 0.5
WEIGHTS_DIR = Path(__file__).parent / "weights"


def default_checkpoint_path() -> Path:
    """The checkpoint shipped inside the package."""
    return WEIGHTS_DIR / "default.pt"


@dataclass(frozen=True)
class LatentStats:
    mean: torch.Tensor
    std: torch.Tensor

    def standardise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean) / self.std

    def restore(self, u: torch.Tensor) -> torch.Tensor:
        """Back to latent space, projected onto the encoder's layer-normalised sphere."""
        return F.layer_norm(u * self.std + self.mean, self.mean.shape)


class Pipeline:
    def __init__(self, payload: dict, sha256: str) -> None:
        self.config = ModelConfig.from_dict(payload["model_config"])
        self.version: str = payload["version"]
        self.sha256 = sha256
        self.metadata = {k: payload[k] for k in ("preset", "seed", "trained_at", "corpus_config", "train_config")}
        self.history: list[dict] = payload["history"]
        self.autoencoder = AutoEncoder(self.config)
        self.autoencoder.load_state_dict(checkpoint.full(payload["autoencoder"]))
        self.denoiser = Denoiser(self.config)
        self.denoiser.load_state_dict(checkpoint.full(payload["denoiser"]))
        self.autoencoder.eval()
        self.denoiser.eval()
        self.stats = LatentStats(payload["latent_mean"].float(), payload["latent_std"].float())
        means = payload.get("family_means")  # absent from checkpoints trained before style transfer used it
        self.family_means = None if means is None else means.float()
        self.frontend = MelFrontEnd(self.config)

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        return cls(checkpoint.read(Path(path)), checkpoint.sha256(Path(path)))

    # prompts
    def known_tags(self) -> list[str]:
        return known_tags()

    def parse_prompt(self, prompt: str) -> ParsedPrompt:
        return parse_prompt(prompt)

    # audio <-> latent
    def encode_batch(self, clips: list[np.ndarray], sample_rate: int) -> np.ndarray:
        if not 1 <= len(clips) <= MAX_BATCH:
            raise ParameterRangeError("audio", f"{len(clips)} clips given; give 1 to {MAX_BATCH}")
        prepared = [prepare(c, sample_rate, self.config, field=f"audio[{i}]") for i, c in enumerate(clips)]
        return self._encode_prepared(prepared)

    def encode(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return self._encode_prepared([prepare(audio, sample_rate, self.config)])[0]

    @torch.inference_mode()
    def _encode_prepared(self, clips: list[np.ndarray]) -> np.ndarray:
        log_mel = self.frontend.log_mel(torch.from_numpy(np.stack(clips)))
        return self.autoencoder.encode(log_mel).numpy().astype(np.float32)

    @torch.inference_mode()
    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Waveforms, one clip at a time: a clip's audio depends on its latent alone (Griffin-Lim starts from the
        same seeded phase for every clip), and Griffin-Lim runs faster per clip than over a batch on 2 cores."""
        log_mel = self.autoencoder.decode(self._latents(latents, "latents"))
        audio = torch.cat([
            self.frontend.to_audio(one[None], torch.Generator().manual_seed(GRIFFIN_LIM_SEED)) for one in log_mel
        ])  # fmt: skip
        return audio.clamp(-1.0, 1.0).numpy().astype(np.float32)

    @torch.inference_mode()
    def decode_log_mel(self, latents: np.ndarray) -> np.ndarray:
        return self.autoencoder.decode(self._latents(latents, "latents")).numpy()

    # generation
    @torch.inference_mode()
    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> np.ndarray:
        steps = self._steps(steps)
        guidance = self._guidance(guidance_scale)
        self._check_batch(prompts, seeds)
        ids = torch.tensor([parse_prompt(p, field=f"prompts[{i}]").slot_ids() for i, p in enumerate(prompts)])
        noise = sampler.seeded_noise(seeds, self.config.latent_dim)
        u = sampler.ddim(self.denoiser, noise, ids, steps, guidance)
        return self.stats.restore(u).numpy().astype(np.float32)

    @torch.inference_mode()
    def variants(self, latent: np.ndarray, variance: float, seeds: list[int], steps: int | None = None) -> np.ndarray:
        """Re-noise ``latent`` to time ``variance`` (0 = identical, 1 = unrelated); denoise unconditioned."""
        variance = check_range("variance", variance, 0.0, 1.0)
        self._check_batch(seeds, seeds)
        source = self._latents(latent, "latent").expand(len(seeds), -1)
        if variance == 0.0:
            return source.numpy().astype(np.float32).copy()
        ids = torch.zeros(len(seeds), len(SLOTS), dtype=torch.long)
        return self._partial(source, variance, ids, seeds, self._steps(steps), 1.0)

    @torch.inference_mode()
    def transfer(
        self,
        source_latent: np.ndarray,
        style_latent: np.ndarray,
        strength: float | None = None,
        seed: int = 0,
        style_tags: list[str] | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> np.ndarray:
        """Keep the source's melody, mode and tempo; take the style neighbour's instrument and drums.

        The style family comes from ``style_tags`` when known, else is read off the neighbour's latent (as
        are its drums). The source moves from its family's mean latent towards the style family's, which
        changes the timbre and keeps the rest of the latent (melody, rhythm); it is then re-noised a little
        and denoised towards the style's family and drums and the source's own mode and tempo. Checkpoints
        without family means fall back to re-noising the source to time ``strength``.
        """
        strength = check_range("strength", self.config.default_strength if strength is None else strength, 0.0, 1.0)
        source = self._latents(source_latent, "source_latent")
        style = self._latents(style_latent, "style_latent")
        source_ids = self._predicted_ids(source)
        ids = self._transfer_ids(source_ids, style, style_tags)
        if strength == 0.0:
            return source[0].numpy().astype(np.float32).copy()
        steps, guidance = self._steps(steps), self._guidance(guidance_scale)
        if self.family_means is None:
            return self._partial(source, strength, ids, [seed], steps, guidance)[0]
        shift = self.family_means[ids[:, 0] - 1] - self.family_means[source_ids[:, 0] - 1]
        moved = F.layer_norm(source + TRANSFER_GAIN * strength * shift, (self.config.latent_dim,))
        return self._partial(moved, TRANSFER_NOISE * strength, ids, [seed], steps, guidance)[0]

    def predict_tags(self, latent: np.ndarray) -> list[str]:
        ids = self._predicted_ids(self._latents(latent, "latent"))[0]
        return [FAMILY_NAMES[ids[0] - 1], MODES[ids[1] - 1], TEMPO_CLASSES[ids[2] - 1], DRUM_TAGS[ids[4] - 1]]

    # helpers
    def _partial(
        self,
        source: torch.Tensor,
        t_start: float,
        ids: torch.Tensor,
        seeds: list[int],
        steps: int,
        guidance: float,
    ) -> np.ndarray:
        noise = sampler.seeded_noise(seeds, self.config.latent_dim)
        noisy = sampler.add_noise(self.stats.standardise(source), noise, t_start)
        partial_steps = max(1, round(steps * t_start))
        u = sampler.ddim(self.denoiser, noisy, ids, partial_steps, guidance, t_start=t_start)
        return self.stats.restore(u).numpy().astype(np.float32)

    @torch.inference_mode()
    def _predicted_ids(self, z: torch.Tensor) -> torch.Tensor:
        """Slot ids read off latents by the label heads; bpm is left unset (0)."""
        logits = self.autoencoder.label_logits(z)
        columns = [logits["family"], logits["mode"], logits["tempo"], None, logits["drums"]]
        ids = [c.argmax(-1) + 1 if c is not None else torch.zeros(len(z), dtype=torch.long) for c in columns]
        return torch.stack(ids, dim=1)

    def _transfer_ids(
        self, source_ids: torch.Tensor, style: torch.Tensor, style_tags: list[str] | None
    ) -> torch.Tensor:
        """The source's own slot ids (read off its latent) with the style's family and drums."""
        ids = source_ids.clone()
        style_ids = self._predicted_ids(style)
        ids[:, 0], ids[:, 4] = style_ids[:, 0], style_ids[:, 4]
        if style_tags:
            parsed = parse_prompt(", ".join(style_tags), field="style_tags")
            for column in (0, 4):
                if parsed.slot_ids()[column]:
                    ids[:, column] = parsed.slot_ids()[column]
        return ids

    def _latents(self, latents: np.ndarray, field: str) -> torch.Tensor:
        array = np.asarray(latents, dtype=np.float32)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[1] != self.config.latent_dim or len(array) == 0:
            raise ParameterRangeError(
                field,
                f"{field} has shape {np.shape(latents)}; expected ({self.config.latent_dim},) or "
                f"(n, {self.config.latent_dim}) with 1 <= n <= {MAX_BATCH}",
            )
        if not np.all(np.isfinite(array)):
            raise ParameterRangeError(field, f"{field} contains NaN or infinite values; all must be finite")
        if np.any(np.linalg.norm(array, axis=1) == 0):
            raise ParameterRangeError(field, f"{field} contains a zero vector; latents must have non-zero norm")
        return torch.from_numpy(array)

    def _steps(self, steps: int | None) -> int:
        steps = self.config.default_steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or not 1 <= steps <= MAX_STEPS:
            raise ParameterRangeError("steps", f"steps={steps!r} must be an integer in [1, {MAX_STEPS}]")
        return int(steps)

    def _guidance(self, guidance_scale: float | None) -> float:
        value = self.config.default_guidance if guidance_scale is None else guidance_scale
        return check_range("guidance_scale", value, *GUIDANCE_RANGE)

    @staticmethod
    def _check_batch(items: list, seeds: list[int]) -> None:
        if not 1 <= len(seeds) <= MAX_BATCH:
            raise ParameterRangeError("seeds", f"{len(seeds)} seeds given; give 1 to {MAX_BATCH}")
        if len(items) != len(seeds):
            raise ParameterRangeError("seeds", f"{len(items)} prompts but {len(seeds)} seeds; give one seed per prompt")
        for seed in seeds:
            if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
                raise ParameterRangeError(
                    "seeds", f"seeds contains {seed!r}; each seed must be an integer in [0, 2**63 - 1]"
                )

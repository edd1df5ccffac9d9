"""The model as the service sees it: load a checkpoint, encode, decode, generate, vary, transfer.

Two latents (see ``model.autoencoder``): the 512-d *global* latent is what the service stores and
searches; the *joint* latent (global followed by the flattened content) is what the decoder needs.
Interface (numpy float32 arrays)::

    p = Pipeline.load(default_checkpoint_path())   # rebuilt from the file alone; eval(), inference mode
    p.config.sample_rate, p.config.clip_seconds, p.config.latent_dim, p.config.joint_dim
    p.encode(audio, sample_rate) -> (512,)                 # any length: windows pooled into one vector
    p.encode_batch(list_of_arrays, sample_rate) -> (n, 512)
    p.analyse(audio, sample_rate) -> Analysis              # pooled latent, per-window latents, in-domain score
    p.analyse_many([(audio, sample_rate), ...]) -> [Analysis | ModelInputError]   # windows batched across files
    p.encode_joint(audio, sample_rate) -> (joint_dim,)     # the first window, for variants and transfers
    p.generate(prompts, seeds, steps, guidance_scale) -> (n, joint_dim)
    p.decode(joint (n, joint_dim)) -> (n, n_samples) waveforms in [-1, 1]
    p.searchable(joint) -> (n, 512)                        # the global part
    p.variants(joint, variance, seeds) -> (n, joint_dim)   # partial noise, variance in [0, 1]
    p.transfer(source_joint, style_latent (512,), strength, seed) -> (joint_dim,)
    p.predict_tags(latent (512,)) -> list[str]             # family, mode, tempo, drums
    p.sha256, p.version, p.in_domain_threshold

Bad input raises the ``ValueError`` subclasses of ``service.ml.errors`` naming the field, the value
and the allowed range. Determinism: every random draw comes from a generator seeded by the caller's
seed (Griffin-Lim's initial phase from a fixed seed), so fixed seeds give byte-identical latents and
audio on the same machine and thread count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from service.ml import checkpoint
from service.ml.audio import MelFrontEnd, Windows, prepare_windows
from service.ml.config import ModelConfig
from service.ml.data.instruments import FAMILY_NAMES
from service.ml.errors import ModelInputError, ParameterRangeError, check_range
from service.ml.model import sampler
from service.ml.model.autoencoder import AutoEncoder
from service.ml.model.diffusion import Denoiser
from service.ml.tags import DRUM_TAGS, ParsedPrompt, known_tags, parse_prompt

MAX_STEPS = 200
GUIDANCE_RANGE = (0.0, 20.0)
MAX_BATCH = 256
MAX_WINDOWS = 600  # 20 minutes at a 2 s hop
GRIFFIN_LIM_SEED = 0
QUIET_WINDOW = 0.1  # a window this much quieter than the loudest counts for less when pooling
WEIGHTS_DIR = Path(__file__).parent / "weights"


def default_checkpoint_path() -> Path:
    """The checkpoint shipped inside the package."""
    return WEIGHTS_DIR / "default.pt"


@dataclass(frozen=True)
class Analysis:
    latent: np.ndarray  # (512,) pooled over every window
    in_domain: float  # in [0, 1]: how much the audio sounds like music the model knows
    in_domain_ok: bool  # in_domain >= the model's calibrated threshold
    window_latents: np.ndarray  # (w, 512)
    window_starts: np.ndarray  # seconds
    window_ends: np.ndarray
    window_in_domain: np.ndarray  # (w,)


@dataclass(frozen=True)
class LatentStats:
    mean: torch.Tensor
    std: torch.Tensor
    latent_dim: int

    def standardise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean) / self.std

    def restore(self, u: torch.Tensor) -> torch.Tensor:
        """Back to joint space, the global part projected onto the encoder's layer-normalised sphere."""
        z = u * self.std + self.mean
        g = F.layer_norm(z[:, : self.latent_dim], (self.latent_dim,))
        return torch.cat([g, z[:, self.latent_dim :]], dim=1)


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
        self.stats = LatentStats(payload["latent_mean"].float(), payload["latent_std"].float(), self.config.latent_dim)
        self.in_domain_threshold = float(payload["in_domain_threshold"])
        self.frontend = MelFrontEnd(self.config)

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        return cls(checkpoint.read(Path(path)), checkpoint.sha256(Path(path)))

    # prompts
    def known_tags(self) -> list[str]:
        return known_tags()

    def parse_prompt(self, prompt: str) -> ParsedPrompt:
        return parse_prompt(prompt)

    # audio -> latent
    def encode(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.analyse(audio, sample_rate).latent

    def encode_batch(self, clips: list[np.ndarray], sample_rate: int) -> np.ndarray:
        if not 1 <= len(clips) <= MAX_BATCH:
            raise ParameterRangeError("audio", f"{len(clips)} clips given; give 1 to {MAX_BATCH}")
        windows = [self._windows(c, sample_rate, f"audio[{i}]") for i, c in enumerate(clips)]
        return np.stack([_pool(latents, scores, w.rms) for w, (latents, scores) in self._encode_files(windows)])

    def analyse(self, audio: np.ndarray, sample_rate: int) -> Analysis:
        windows = self._windows(audio, sample_rate, "audio")
        return self._analysis(windows, *self._encode_windows(windows.clips))

    def analyse_many(self, files: list[tuple[np.ndarray, int]]) -> list[Analysis | ModelInputError]:
        """``analyse`` of many files (audio, sample rate) with the windows of several files batched through the
        encoder (up to ``MAX_WINDOWS`` at a time, so long files do not pile up in memory); a file the model refuses
        gets its error in its place instead of failing the others."""
        out: list[Analysis | ModelInputError] = []
        group: list[Windows | ModelInputError] = []
        for audio, sample_rate in files:
            try:
                group.append(self._windows(audio, sample_rate, "audio"))
            except ModelInputError as exc:
                group.append(exc)
            if sum(len(w.clips) for w in group if isinstance(w, Windows)) >= MAX_WINDOWS:
                out += self._analyse_group(group)
                group = []
        return out + self._analyse_group(group)

    def _analyse_group(self, group: list[Windows | ModelInputError]) -> list[Analysis | ModelInputError]:
        usable = [w for w in group if isinstance(w, Windows)]
        if not usable:
            return list(group)
        analyses = iter(self._analysis(w, *encoded) for w, encoded in self._encode_files(usable))
        return [next(analyses) if isinstance(item, Windows) else item for item in group]

    def _encode_files(self, files: list[Windows]) -> list[tuple[Windows, tuple[np.ndarray, np.ndarray]]]:
        """Each file with its windows' (latents, in-domain scores): the windows of all files in one batched encode."""
        latents, scores = self._encode_windows(np.concatenate([w.clips for w in files]))
        edges = np.cumsum([0] + [len(w.clips) for w in files])
        return [(w, (latents[a:b], scores[a:b])) for w, a, b in zip(files, edges[:-1], edges[1:], strict=True)]

    def _analysis(self, windows: Windows, latents: np.ndarray, scores: np.ndarray) -> Analysis:
        loudness = _loudness(windows.rms)
        score = float(np.sum(loudness * scores) / np.sum(loudness))
        return Analysis(
            latent=_pool(latents, scores, windows.rms),
            in_domain=score,
            in_domain_ok=score >= self.in_domain_threshold,
            window_latents=latents,
            window_starts=windows.starts,
            window_ends=windows.ends,
            window_in_domain=scores,
        )

    @torch.inference_mode()
    def encode_joint(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        clip = self._windows(audio, sample_rate, "audio", max_windows=1).clips
        log_mel = self.frontend.log_mel(torch.from_numpy(clip))
        joint = torch.cat([self.autoencoder.encode_global(log_mel), self.autoencoder.encode_content(log_mel)], dim=1)
        return joint[0].numpy().astype(np.float32)

    def searchable(self, joint: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(joint, dtype=np.float32)[..., : self.config.latent_dim])

    def _windows(self, audio, sample_rate: int, field: str, max_windows: int = MAX_WINDOWS) -> Windows:
        return prepare_windows(audio, sample_rate, self.config, field, max_windows=max_windows)

    @torch.inference_mode()
    def _encode_windows(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        latents, scores = [], []
        for i in range(0, len(clips), 64):
            log_mel = self.frontend.log_mel(torch.from_numpy(clips[i : i + 64]))
            g = self.autoencoder.encode_global(log_mel)
            latents.append(g)
            scores.append(torch.sigmoid(self.autoencoder.in_domain_logit(g)))
        return torch.cat(latents).numpy().astype(np.float32), torch.cat(scores).numpy().astype(np.float64)

    # latent -> audio
    @torch.inference_mode()
    def decode(self, joint: np.ndarray) -> np.ndarray:
        """Waveforms, one clip at a time: a clip's audio depends on its latent alone (Griffin-Lim starts from the
        same seeded phase for every clip), and Griffin-Lim runs faster per clip than over a batch on 2 cores."""
        log_mel = self._decode_log_mel(self._joint(joint, "latents"))
        audio = [self.frontend.to_audio(one[None], torch.Generator().manual_seed(GRIFFIN_LIM_SEED)) for one in log_mel]
        return torch.cat(audio).clamp(-1.0, 1.0).numpy().astype(np.float32)

    @torch.inference_mode()
    def decode_log_mel(self, joint: np.ndarray) -> np.ndarray:
        return self._decode_log_mel(self._joint(joint, "latents")).numpy()

    def _decode_log_mel(self, joint: torch.Tensor) -> torch.Tensor:
        d = self.config.latent_dim
        return self.autoencoder.decode(joint[:, :d], joint[:, d:])

    # generation
    @torch.inference_mode()
    def generate(
        self, prompts: list[str], seeds: list[int], steps: int | None = None, guidance_scale: float | None = None
    ) -> np.ndarray:
        steps, guidance = self._steps(steps), self._guidance(guidance_scale)
        self._check_batch(prompts, seeds)
        ids = torch.tensor([parse_prompt(p, field=f"prompts[{i}]").slot_ids() for i, p in enumerate(prompts)])
        noise = sampler.seeded_noise(seeds, self.config.joint_dim)
        u = sampler.ddim(self.denoiser, noise, ids, steps, guidance)
        return self.stats.restore(u).numpy().astype(np.float32)

    @torch.inference_mode()
    def variants(self, joint: np.ndarray, variance: float, seeds: list[int], steps: int | None = None) -> np.ndarray:
        """Re-noise the joint latent to time ``variance`` (0 = identical, 1 = unrelated) and denoise it towards
        the tags its global latent reads as, so a variant keeps the instrument unless the variance is high."""
        variance = check_range("variance", variance, 0.0, 1.0)
        self._check_batch(seeds, seeds)
        source = self._joint(joint, "latent").expand(len(seeds), -1)
        if variance == 0.0:
            return source.numpy().astype(np.float32).copy()
        ids = self._predicted_ids(source[:, : self.config.latent_dim])
        return self._partial(source, variance, ids, seeds, self._steps(steps), 1.0)

    @torch.inference_mode()
    def transfer(self, source_joint: np.ndarray, style_latent: np.ndarray, strength: float | None = None) -> np.ndarray:
        """The source's content (melody, rhythm) played with a global latent moved from the source's towards the
        style neighbour's by ``strength`` (0 = the source, 1 = the neighbour's sound); deterministic."""
        strength = check_range("strength", self.config.default_strength if strength is None else strength, 0.0, 1.0)
        source = self._joint(source_joint, "source_joint")
        style = self._latents(style_latent, "style_latent")
        if strength == 0.0:
            return source[0].numpy().astype(np.float32).copy()
        d = self.config.latent_dim
        mixed = F.layer_norm(torch.lerp(source[:, :d], style, strength), (d,))
        return torch.cat([mixed, source[:, d:]], dim=1)[0].numpy().astype(np.float32)

    def predict_tags(self, latent: np.ndarray) -> list[str]:
        """The family and drums tags the label heads read off a global latent."""
        ids = self._predicted_ids(self._latents(latent, "latent"))[0]
        return [FAMILY_NAMES[ids[0] - 1], DRUM_TAGS[ids[4] - 1]]

    # helpers
    def _partial(self, source, t_start: float, ids, seeds: list[int], steps: int, guidance: float) -> np.ndarray:
        noise = sampler.seeded_noise(seeds, self.config.joint_dim)
        noisy = sampler.add_noise(self.stats.standardise(source), noise, t_start)
        partial_steps = max(1, round(steps * t_start))
        u = sampler.ddim(self.denoiser, noisy, ids, partial_steps, guidance, t_start=t_start)
        return self.stats.restore(u).numpy().astype(np.float32)

    @torch.inference_mode()
    def _predicted_ids(self, g: torch.Tensor) -> torch.Tensor:
        """Slot ids read off global latents: family and drums by the heads; mode, tempo and bpm live in the
        content, so they are left unset (0)."""
        logits = self.autoencoder.label_logits(g)
        zeros = torch.zeros(len(g), dtype=torch.long)
        return torch.stack([logits["family"].argmax(-1) + 1, zeros, zeros, zeros, logits["drums"].argmax(-1) + 1], 1)

    def _joint(self, joint: np.ndarray, field: str) -> torch.Tensor:
        return self._vectors(joint, field, self.config.joint_dim)

    def _latents(self, latents: np.ndarray, field: str) -> torch.Tensor:
        return self._vectors(latents, field, self.config.latent_dim)

    @staticmethod
    def _vectors(values: np.ndarray, field: str, dim: int) -> torch.Tensor:
        array = np.asarray(values, dtype=np.float32)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[1] != dim or not 1 <= len(array) <= MAX_BATCH:
            raise ParameterRangeError(
                field,
                f"{field} has shape {np.shape(values)}; expected ({dim},) or (n, {dim}) with 1 <= n <= {MAX_BATCH}",
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


def _loudness(rms: np.ndarray) -> np.ndarray:
    """1 for every window but those much quieter than the loudest, which count in proportion to their level."""
    return np.minimum(1.0, rms / (QUIET_WINDOW * max(float(rms.max()), 1e-12))) + 1e-9


def _weights(scores: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """How much each window counts when pooling: its loudness weight times its in-domain score (all windows
    alike when none sounds like music)."""
    weights = scores * _loudness(rms)
    return weights if weights.sum() > 1e-6 else _loudness(rms)


def _pool(latents: np.ndarray, scores: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """One vector for the whole file: the weighted mean of the unit window latents, back on the latent sphere."""
    if len(latents) == 1:
        return latents[0]
    unit = latents / np.linalg.norm(latents, axis=1, keepdims=True)
    mean = (_weights(scores, rms)[:, None] * unit).sum(0)
    centred = mean - mean.mean()
    return (centred / (centred.std() + 1e-6)).astype(np.float32)

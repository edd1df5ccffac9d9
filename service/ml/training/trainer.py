"""The training run: both phases with progress bars, periodic validation, EMA weights and resumable state.

``train(preset, out, seed)`` renders (or loads) the corpus, trains the autoencoder, encodes the
training clips into joint (global, content) latents, trains the denoiser on them, calibrates the
in-domain threshold on the validation clips and writes the checkpoint. A state file next to
``out`` (``<out>.state``) is written every ``checkpoint_every`` steps; re-running with the same
arguments resumes from it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from service.ml import checkpoint
from service.ml.audio import MelFrontEnd
from service.ml.config import PRESETS, Preset
from service.ml.data import corpus, speech
from service.ml.data.instruments import FAMILY_NAMES
from service.ml.model.autoencoder import AutoEncoder
from service.ml.model.diffusion import Denoiser
from service.ml.training import batches, validation
from service.ml.training.losses import autoencoder_loss, denoiser_loss
from service.ml.training.phase import Phase, step_generator
from service.ml.training.selection import CheckpointSelector

IN_DOMAIN_QUANTILE = 0.02  # the threshold lets 98 % of validation clips (unseen melodies) pass
SPEECH_POOL_CLIPS = 400


class Trainer:
    def __init__(self, preset: Preset, out: Path, seed: int, progress: bool, workers: int) -> None:
        self.preset, self.out, self.seed, self.progress, self.workers = preset, Path(out), seed, progress, workers
        self.state_path = self.out.with_name(self.out.name + ".state")
        self.history: list[dict] = []
        self.timings: dict[str, float] = {}
        self.frontend = MelFrontEnd(preset.model)
        torch.manual_seed(seed)
        self.autoencoder = Phase("autoencoder", 1, AutoEncoder(preset.model), preset.train.ae_lr, preset.train.ae_steps)
        self.denoiser = Phase(
            "denoiser", 2, Denoiser(preset.model), preset.train.diffusion_lr, preset.train.diffusion_steps
        )

    def run(self) -> Path:
        started = time.perf_counter()
        train, val = self._load_data()
        scenes = batches.SceneIndex.of(train)
        val_set = validation.ValidationSet.of(val, self.frontend, self.preset.model)
        speech_pool = self._speech_pool()
        self.selector = CheckpointSelector(self.preset, self.frontend)
        self._resume()
        self._set_mel_statistics(train)
        self._run_phase(
            self.autoencoder,
            lambda g, rng: self._ae_step(train, scenes, g, rng, speech_pool),
            lambda: (
                validation.autoencoder(self.autoencoder.ema, val_set)
                | self.selector.offer(self.autoencoder.ema, self.autoencoder.step, self.autoencoder.steps)
            ),
        )
        self.selector.apply_best(self.autoencoder.ema)
        ae = self.autoencoder.ema
        latents = validation.encode_joint(ae, train, self.frontend, self.preset.model)
        mean, std = latents.mean(0), latents.std(0) + 1e-4
        g = latents[:, : self.preset.model.latent_dim]
        family_means = class_means(g, scenes.slot_ids[:, 0] - 1, len(FAMILY_NAMES))
        standardised = (latents - mean) / std
        val_latents = (validation.encode_joint(ae, val, self.frontend, self.preset.model) - mean) / std
        self._run_phase(
            self.denoiser,
            lambda gen, rng: self._dn_step(standardised, scenes.slot_ids, gen),
            lambda: validation.denoiser(self.denoiser.ema, val_latents, val_set.slot_ids, self.preset),
        )
        threshold = float(np.quantile(validation.in_domain_scores(ae, val_set), IN_DOMAIN_QUANTILE))
        self.timings["total_seconds"] = time.perf_counter() - started
        return self._write_final(mean, std, family_means, threshold)

    def _load_data(self) -> tuple[corpus.Corpus, corpus.Corpus]:
        started = time.perf_counter()
        splits = [
            corpus.load(self.preset.corpus, self.preset.model, name, self.workers, self.progress)
            for name in ("train", "validation")
        ]
        self.timings["data_seconds"] = time.perf_counter() - started
        return splits[0], splits[1]

    def _speech_pool(self) -> np.ndarray | None:
        if not self.preset.train.speech_negatives:
            return None
        return speech.pool(SPEECH_POOL_CLIPS, self.preset.model.sample_rate, corpus.cache_dir(), self.seed)

    def _set_mel_statistics(self, train: corpus.Corpus) -> None:
        if self.autoencoder.step == 0:
            rows = np.random.default_rng(self.seed).choice(len(train.labels), min(2000, len(train.labels)), False)
            sample = batches.log_mel(train.audio[np.sort(rows), : self.preset.model.n_samples], self.frontend)
            for model in (self.autoencoder.model, self.autoencoder.ema):
                model.mel_mean.copy_(sample.mean(dim=(0, 2))[:, None])
                model.mel_std.copy_(sample.std(dim=(0, 2))[:, None])

    def _ae_step(self, train, scenes, generator: torch.Generator, rng: np.random.Generator, speech_pool) -> float:
        batch = batches.sample(train, scenes, self.preset, self.frontend, rng, speech_pool)
        loss, reconstruction, _ = autoencoder_loss(self.autoencoder.model, batch, self.preset, generator)
        self.autoencoder.apply(loss, self.preset.train.ema_decay)
        return reconstruction.item()

    def _dn_step(self, latents: torch.Tensor, slot_ids: torch.Tensor, generator: torch.Generator) -> float:
        index = torch.randint(len(latents), (self.preset.train.batch_scenes * 4,), generator=generator)
        loss = denoiser_loss(self.denoiser.model, latents[index], slot_ids[index], self.preset, generator)
        self.denoiser.apply(loss, self.preset.train.ema_decay)
        return loss.item()

    def _run_phase(self, phase: Phase, step_fn, validate_fn) -> None:
        started = time.perf_counter()
        phase.model.train()
        bar = tqdm(total=phase.steps, initial=phase.step, desc=phase.name, disable=not self.progress)
        losses: list[float] = []
        while phase.step < phase.steps:
            generator = step_generator(self.seed, phase.index, phase.step)
            rng = np.random.default_rng([self.seed, phase.index, phase.step])
            losses.append(step_fn(generator, rng))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if phase.step % self.preset.train.validate_every == 0 or phase.step == phase.steps:
                record = {"phase": phase.name, "step": phase.step, "train_loss": float(np.mean(losses))}
                record.update(validate_fn())
                self.history.append(record)
                bar.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
                losses = []
            if phase.step % self.preset.train.checkpoint_every == 0 and phase.step < phase.steps:
                self._save_state()
        bar.close()
        phase.model.eval()
        key = f"{phase.name}_seconds"
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - started

    def _save_state(self) -> None:
        checkpoint.write(
            {
                "format": checkpoint.FORMAT,
                "preset": self.preset.name,
                "seed": self.seed,
                "autoencoder": self.autoencoder.state(),
                "denoiser": self.denoiser.state(),
                "selection": self.selector.state(),
                "history": self.history,
                "timings": self.timings,
            },
            self.state_path,
        )

    def _resume(self) -> None:
        if not self.state_path.exists():
            return
        state = checkpoint.read(self.state_path)
        if state["preset"] != self.preset.name or state["seed"] != self.seed:
            raise ValueError(f"{self.state_path} belongs to preset {state['preset']!r} seed {state['seed']}")
        self.autoencoder.restore(state["autoencoder"])
        self.denoiser.restore(state["denoiser"])
        self.selector.restore(state.get("selection"))
        self.history, self.timings = state["history"], state["timings"]

    def _write_final(self, latent_mean, latent_std, family_means, in_domain_threshold: float) -> Path:
        trained_at = datetime.now(UTC)
        payload = {
            "format": checkpoint.FORMAT,
            "version": f"{self.preset.name}-{trained_at:%Y%m%d%H%M}-s{self.seed}",
            "preset": self.preset.name,
            "seed": self.seed,
            "trained_at": trained_at.isoformat(),
            "model_config": self.preset.model.to_dict(),
            "corpus_config": self.preset.corpus.to_dict(),
            "train_config": self.preset.train.to_dict(),
            "autoencoder": checkpoint.half(self.autoencoder.ema.state_dict()),
            "denoiser": checkpoint.half(self.denoiser.ema.state_dict()),
            "latent_mean": latent_mean,
            "latent_std": latent_std,
            "family_means": family_means,
            "in_domain_threshold": in_domain_threshold,
            "selected_autoencoder": {
                "bank": self.selector.bank_name,
                "step": self.selector.best_step,
                "family_p5": self.selector.best_score,
            }
            if self.selector.active
            else None,
            "history": self.history,
            "timings": self.timings,
            "torch_threads": torch.get_num_threads(),
        }
        path = checkpoint.write(payload, self.out)
        self.state_path.unlink(missing_ok=True)
        return path


def class_means(latents: torch.Tensor, classes: torch.Tensor, count: int) -> torch.Tensor:
    """(count, dim): the mean latent of each class (style transfer reads tags off them)."""
    sums = torch.zeros(count, latents.shape[1]).index_add_(0, classes, latents)
    sizes = torch.bincount(classes, minlength=count).clamp(min=1)
    return sums / sizes[:, None]


def train(
    preset: str = "tiny",
    out: str | Path = "model.pt",
    seed: int = 0,
    progress: bool = False,
    threads: int | None = None,
    workers: int = 1,
) -> Path:
    """Train ``preset`` ("tiny" or "default") and write its checkpoint to ``out``; resumes if interrupted.

    ``threads`` sets torch's intra-op threads for the run (restored afterwards); ``workers`` is the number
    of processes rendering the corpus (when it is not cached yet).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is unknown; choose one of {sorted(PRESETS)}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return Trainer(PRESETS[preset], Path(out), seed, progress, workers).run()
    finally:
        torch.set_num_threads(previous_threads)

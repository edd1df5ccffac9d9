"""Training: corpus -> autoencoder (with label heads) -> latents -> tag-conditioned denoiser.

``train(preset, out, seed)`` runs both phases with progress bars and periodic
validation, keeps EMA weights, and writes a resumable state file next to
``out`` (``<out>.state``) every ``checkpoint_every`` steps; re-running with the
same arguments resumes from it. The final checkpoint holds the EMA weights in
fp16, all configs, latent statistics and the training history.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from service.ml import checkpoint, corpus
from service.ml.audio import MelFrontEnd, normalise_loudness
from service.ml.autoencoder import LABEL_HEADS, AutoEncoder
from service.ml.config import PRESETS, Preset
from service.ml.diffusion import Denoiser, alpha_sigma
from service.ml.instruments import FAMILY_NAMES
from service.ml.tags import labels_to_slot_ids

MEL_BATCH = 64


@dataclass
class SplitTensors:
    """One split as the trainer sees it: log-mels and slot ids (1-based, 0 never used)."""

    log_mel: torch.Tensor  # (n, n_mels, n_frames)
    slot_ids: torch.Tensor  # (n, 5) family, mode, tempo, bpm, drums

    def label_targets(self) -> dict[str, torch.Tensor]:
        columns = {"family": 0, "mode": 1, "tempo": 2, "drums": 4}
        return {name: self.slot_ids[:, columns[name]] - 1 for name in LABEL_HEADS}


def log_mels(audio: np.ndarray, frontend: MelFrontEnd) -> torch.Tensor:
    chunks = [
        frontend.log_mel(torch.from_numpy(normalise_loudness(audio[i : i + MEL_BATCH])))
        for i in range(0, len(audio), MEL_BATCH)
    ]
    return torch.cat(chunks)


def split_tensors(clips: corpus.Corpus, frontend: MelFrontEnd) -> SplitTensors:
    ids = [labels_to_slot_ids(c.family, c.mode, c.bpm, c.drums) for c in clips.labels]
    return SplitTensors(log_mels(clips.audio, frontend), torch.tensor(ids, dtype=torch.long))


def step_generator(seed: int, phase: int, step: int) -> torch.Generator:
    """Randomness of one step depends only on (seed, phase, step): resuming replays the same run."""
    return torch.Generator().manual_seed(seed * 1_000_003 + phase * 100_000_007 + step)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.lerp_(param, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)


class Phase:
    """A model, its EMA copy and optimiser, trained for a number of steps with resumable state."""

    def __init__(self, name: str, index: int, model: torch.nn.Module, lr: float, steps: int) -> None:
        self.name, self.index, self.steps = name, index, steps
        self.model = model
        self.ema = copy.deepcopy(model).eval()
        self.peak_lr = lr
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        self.step = 0

    def learning_rate(self) -> float:
        """Linear warm-up over 5% of the steps, then cosine decay to 5% of the peak.

        A pure function of (step, steps), so a run resumed with a different step budget
        simply continues on the new schedule.
        """
        warmup = max(1, self.steps // 20)
        if self.step < warmup:
            return self.peak_lr * (self.step + 1) / warmup
        progress = min(1.0, (self.step - warmup) / max(1, self.steps - warmup))
        return self.peak_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
        }

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]

    def apply(self, loss: torch.Tensor, ema_decay: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        ema_update(self.ema, self.model, min(ema_decay, (1 + self.step) / (10 + self.step)))
        self.step += 1


def supervised_contrastive(z: torch.Tensor, classes: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SupCon (Khosla et al. 2020): cosine neighbours of a latent should share its instrument family."""
    unit = F.normalize(z, dim=-1)
    self_mask = torch.eye(len(z), dtype=torch.bool)
    logits = (unit @ unit.T / temperature).masked_fill(self_mask, -1e9)
    positives = (classes[:, None] == classes[None, :]) & ~self_mask
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    has_positive = positives.any(dim=1)
    mean_positive = (log_prob * positives).sum(1)[has_positive] / positives.sum(1)[has_positive]
    return -mean_positive.mean()


def as_heard(decoded: torch.Tensor, original: torch.Tensor, model: AutoEncoder) -> torch.Tensor:
    """The log-mel ``encode`` will see once the decoder's (standardised) output is audio again.

    ``encode`` normalises loudness, which shifts a log-mel by a constant; the decoder's blurred
    peaks carry less energy than the original, so its audio comes back about 2 nats louder.
    """
    log_mel = model.unstandardise(decoded)
    energy = torch.logsumexp(original.flatten(1), dim=1) - torch.logsumexp(log_mel.flatten(1), dim=1)
    return log_mel + energy[:, None, None]


def autoencoder_loss(model: AutoEncoder, batch: SplitTensors, preset: Preset, generator: torch.Generator):
    """Reconstruction + label and family-contrastive terms on the latent + latent cycle consistency.

    The decoder sees a noise-jittered latent (smooth latent space for diffusion and variants); the
    cycle term asks the encoder to map the decoder's output back to the same latent.
    """
    target = model.standardise(batch.log_mel)
    z = model.encoder(target)
    jitter = torch.randn(z.shape, generator=generator) * preset.train.latent_noise
    decoded = model.decoder(z + jitter)
    reconstruction = F.l1_loss(decoded, target)
    logits = model.label_logits(z)
    targets = batch.label_targets()
    labels = sum(F.cross_entropy(logits[name], targets[name]) for name in LABEL_HEADS)
    labels = labels + supervised_contrastive(z, targets["family"])
    cycle = 1.0 - F.cosine_similarity(model.encode(as_heard(decoded, batch.log_mel, model)), z.detach(), dim=-1).mean()
    total = reconstruction + preset.train.label_loss_weight * labels + preset.train.cycle_loss_weight * cycle
    return total, reconstruction


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


def sample_batch(split: SplitTensors, size: int, generator: torch.Generator) -> SplitTensors:
    index = torch.randint(len(split.slot_ids), (size,), generator=generator)
    return SplitTensors(split.log_mel[index], split.slot_ids[index])


@torch.no_grad()
def validate_autoencoder(model: AutoEncoder, val: SplitTensors) -> dict[str, float]:
    z = model.encode(val.log_mel)
    family = model.label_logits(z)["family"].argmax(-1)
    return {
        "val_log_mel_l1": float(F.l1_loss(model.decode(z), val.log_mel)),
        "val_family_accuracy": float((family == val.label_targets()["family"]).float().mean()),
    }


@torch.no_grad()
def validate_denoiser(model: Denoiser, latents: torch.Tensor, slot_ids: torch.Tensor, preset: Preset) -> dict:
    generator = torch.Generator().manual_seed(1234)
    losses = [denoiser_loss(model, latents, slot_ids, preset, generator) for _ in range(4)]
    return {"val_v_mse": float(torch.stack(losses).mean())}


def class_means(latents: torch.Tensor, classes: torch.Tensor, count: int) -> torch.Tensor:
    """(count, dim): the mean training latent of each class (style transfer moves a latent between them)."""
    sums = torch.zeros(count, latents.shape[1]).index_add_(0, classes, latents)
    sizes = torch.bincount(classes, minlength=count).clamp(min=1)
    return sums / sizes[:, None]


@torch.no_grad()
def encode_all(model: AutoEncoder, log_mel: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.encode(log_mel[i : i + 256]) for i in range(0, len(log_mel), 256)])


class Trainer:
    def __init__(self, preset: Preset, out: Path, seed: int, progress: bool) -> None:
        self.preset, self.out, self.seed, self.progress = preset, Path(out), seed, progress
        self.state_path = self.out.with_name(self.out.name + ".state")
        self.history: list[dict] = []
        self.timings: dict[str, float] = {}
        torch.manual_seed(seed)
        self.autoencoder = Phase("autoencoder", 1, AutoEncoder(preset.model), preset.train.ae_lr, preset.train.ae_steps)
        self.denoiser = Phase(
            "denoiser", 2, Denoiser(preset.model), preset.train.diffusion_lr, preset.train.diffusion_steps
        )

    def run(self) -> Path:
        started = time.perf_counter()
        train, val = self._load_data()
        self._resume()
        self._set_mel_statistics(train)
        self._run_phase(self.autoencoder, lambda g: self._ae_step(train, g), lambda: self._ae_val(val))
        latents = encode_all(self.autoencoder.ema, train.log_mel)
        mean, std = latents.mean(0), latents.std(0) + 1e-4
        family_means = class_means(latents, train.label_targets()["family"], len(FAMILY_NAMES))
        standardised = (latents - mean) / std
        val_latents = (encode_all(self.autoencoder.ema, val.log_mel) - mean) / std
        self._run_phase(
            self.denoiser,
            lambda g: self._dn_step(standardised, train.slot_ids, g),
            lambda: validate_denoiser(self.denoiser.ema, val_latents, val.slot_ids, self.preset),
        )
        self.timings["total_seconds"] = time.perf_counter() - started
        return self._write_final(mean, std, family_means)

    def _load_data(self) -> tuple[SplitTensors, SplitTensors]:
        started = time.perf_counter()
        frontend = MelFrontEnd(self.preset.model)
        splits = [corpus.load(self.preset.corpus, self.preset.model, name) for name in ("train", "validation")]
        tensors = [split_tensors(split, frontend) for split in splits]
        self.timings["data_seconds"] = time.perf_counter() - started
        return tensors[0], tensors[1]

    def _set_mel_statistics(self, train: SplitTensors) -> None:
        if self.autoencoder.step == 0:
            for model in (self.autoencoder.model, self.autoencoder.ema):
                model.mel_mean.copy_(train.log_mel.mean(dim=(0, 2))[:, None])
                model.mel_std.copy_(train.log_mel.std(dim=(0, 2))[:, None])

    def _ae_step(self, train: SplitTensors, generator: torch.Generator) -> float:
        batch = sample_batch(train, self.preset.train.batch_size, generator)
        loss, reconstruction = autoencoder_loss(self.autoencoder.model, batch, self.preset, generator)
        self.autoencoder.apply(loss, self.preset.train.ema_decay)
        return reconstruction.item()

    def _ae_val(self, val: SplitTensors) -> dict:
        return validate_autoencoder(self.autoencoder.ema, val)

    def _dn_step(self, latents: torch.Tensor, slot_ids: torch.Tensor, generator: torch.Generator) -> float:
        index = torch.randint(len(latents), (self.preset.train.batch_size * 2,), generator=generator)
        loss = denoiser_loss(self.denoiser.model, latents[index], slot_ids[index], self.preset, generator)
        self.denoiser.apply(loss, self.preset.train.ema_decay)
        return loss.item()

    def _run_phase(self, phase: Phase, step_fn, validate_fn) -> None:
        started = time.perf_counter()
        phase.model.train()
        bar = tqdm(total=phase.steps, initial=phase.step, desc=phase.name, disable=not self.progress)
        losses: list[float] = []
        while phase.step < phase.steps:
            losses.append(step_fn(step_generator(self.seed, phase.index, phase.step)))
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
        self.timings[f"{phase.name}_seconds"] = self.timings.get(f"{phase.name}_seconds", 0.0) + (
            time.perf_counter() - started
        )

    def _save_state(self) -> None:
        checkpoint.write(
            {
                "format": checkpoint.FORMAT,
                "preset": self.preset.name,
                "seed": self.seed,
                "autoencoder": self.autoencoder.state(),
                "denoiser": self.denoiser.state(),
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
        self.history, self.timings = state["history"], state["timings"]

    def _write_final(self, latent_mean: torch.Tensor, latent_std: torch.Tensor, family_means: torch.Tensor) -> Path:
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
            "history": self.history,
            "timings": self.timings,
            "torch_threads": torch.get_num_threads(),
        }
        path = checkpoint.write(payload, self.out)
        self.state_path.unlink(missing_ok=True)
        return path


def train(
    preset: str = "tiny",
    out: str | Path = "model.pt",
    seed: int = 0,
    progress: bool = False,
    threads: int | None = None,
) -> Path:
    """Train ``preset`` ("tiny" or "default") and write its checkpoint to ``out``; resumes if interrupted.

    ``threads`` sets torch's intra-op threads for the run (restored afterwards); on a machine
    shared with other work one thread is much faster than two, because contended threads spin
    at every synchronisation point.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is unknown; choose one of {sorted(PRESETS)}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return Trainer(PRESETS[preset], Path(out), seed, progress).run()
    finally:
        torch.set_num_threads(previous_threads)

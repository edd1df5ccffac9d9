"""One training phase: a model, its EMA copy and optimiser, a learning-rate schedule and resumable state."""

from __future__ import annotations

import copy
import math

import torch


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

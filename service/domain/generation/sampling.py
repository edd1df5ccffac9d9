"""The sampling values a generation records: what its request gave, else its model's defaults.

A checkpoint carries its defaults (``default_steps``, ``default_guidance``, ``default_strength`` of its model
config); the registry records them in the model's metadata as ``defaults`` when it registers the checkpoint
(``service.domain.models.registry.recorded_metadata``), and an admin may change them there (``PATCH /v1/models/{ref}``).
A generation is created with the effective numbers filled in, and the worker runs exactly what the row says,
so ``params`` never holds a ``null`` that only the model could resolve.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from service.ml.config import ModelConfig  # a plain dataclass: no model weights are loaded

DEFAULTS_KEY = "defaults"  # in the registry's model metadata
MAX_STEPS = 200  # the pipeline's bounds (service.ml.pipeline), checked again there
GUIDANCE_RANGE = (0.0, 20.0)
STRENGTH_RANGE = (0.0, 1.0)
VARIANT_GUIDANCE = 1.0  # a variant is denoised towards its source's own tags with this guidance (Pipeline.variants)
TRANSFER_STEPS = 0  # a style transfer moves the global latent: deterministic, no sampler steps


@dataclass(frozen=True)
class SamplingDefaults:
    steps: int
    guidance_scale: float
    strength: float

    def as_metadata(self) -> dict[str, Any]:
        return asdict(self)


# a model registered without its checkpoint being read (an old row, a row written by hand): the model config's
FALLBACK = SamplingDefaults(ModelConfig.default_steps, ModelConfig.default_guidance, ModelConfig.default_strength)


def of_config(config: Any) -> SamplingDefaults:
    """A checkpoint's defaults, from its model config."""
    return SamplingDefaults(int(config.default_steps), float(config.default_guidance), float(config.default_strength))


def of_model(metadata: dict[str, Any] | None) -> SamplingDefaults:
    """The defaults recorded for a model (its ``metadata``), each missing one taken from ``FALLBACK``."""
    recorded = (metadata or {}).get(DEFAULTS_KEY)
    recorded = recorded if isinstance(recorded, dict) else {}
    return SamplingDefaults(**{**FALLBACK.as_metadata(), **{k: v for k, v in recorded.items() if v is not None}})


def defaults_problem(metadata: dict[str, Any]) -> str | None:
    """Why a metadata update's ``defaults`` cannot be recorded (None when it can, or is absent)."""
    value = metadata.get(DEFAULTS_KEY)
    if value is None:
        return None
    if not isinstance(value, dict):
        return f"{DEFAULTS_KEY} must be an object with steps, guidance_scale and/or strength"
    if unknown := sorted(set(value) - set(FALLBACK.as_metadata())):
        return f"{DEFAULTS_KEY} has unknown keys {unknown}; known: steps, guidance_scale, strength"
    steps = value.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS):
        return f"{DEFAULTS_KEY}.steps must be an integer in [1, {MAX_STEPS}]; got {steps!r}"
    for key, (low, high) in (("guidance_scale", GUIDANCE_RANGE), ("strength", STRENGTH_RANGE)):
        number = value.get(key)
        if number is not None and not _number_in(number, low, high):
            return f"{DEFAULTS_KEY}.{key} must be a number in [{low}, {high}]; got {number!r}"
    return None


def _number_in(value: Any, low: float, high: float) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and low <= value <= high
    )

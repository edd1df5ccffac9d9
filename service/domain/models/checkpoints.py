"""Checking a checkpoint file before the registry takes it: it must load as the project's model and encode a
test clip into a finite latent of the size the database stores.

A text file, another program's pickle, weights that do not fit their config: each is refused with a reason
naming ``checkpoint_path``, before any row is written. The reason never passes on torch's advice to retry
with ``weights_only=False``: that would run whatever code an untrusted file holds.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from service.db.schema.models import LATENT_DIM
from service.domain.generation import sampling
from service.domain.models.registry import InvalidModelInput, ModelSpec

TEST_SAMPLE_RATE = 16000
TEST_SECONDS = 2
FIELD = "checkpoint_path"


def probe_clip() -> np.ndarray:
    """Two seconds of quiet noise at 16 kHz: every model resamples and pads it, and encodes it."""
    return np.random.default_rng(0).standard_normal(TEST_SAMPLE_RATE * TEST_SECONDS).astype("float32") * 0.1


def inspect(path: Path) -> ModelSpec:
    """What the checkpoint at ``path`` really is, after loading it and encoding the test clip (blocking: call
    it off the event loop)."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise InvalidModelInput(FIELD, f"{path.name} is not a PyTorch checkpoint (torch.save writes a zip archive)")
    from service.ml.pipeline import Pipeline  # torch: imported only for a file that may be a checkpoint

    try:
        pipeline = Pipeline.load(path)
        latent = np.asarray(pipeline.encode(probe_clip(), TEST_SAMPLE_RATE))
    except Exception as exc:
        raise InvalidModelInput(
            FIELD, f"{path.name} does not load as a Soundalike model: {load_failure(exc)}"
        ) from None
    config = pipeline.config
    if config.latent_dim != LATENT_DIM:
        raise InvalidModelInput(
            FIELD, f"{path.name} makes {config.latent_dim}-d latents; the database stores {LATENT_DIM}-d ones"
        )
    if latent.shape != (LATENT_DIM,) or not np.isfinite(latent).all():
        what = f"{latent.shape} values, not a finite {LATENT_DIM}-d latent"
        raise InvalidModelInput(FIELD, f"{path.name} encoded its test clip into {what}")
    return spec_of(pipeline)


def spec_of(pipeline: Any) -> ModelSpec:
    """What the registry records of a loaded checkpoint: its shape, in-domain threshold and sampling defaults."""
    config = pipeline.config
    return ModelSpec(
        config.latent_dim,
        config.sample_rate,
        config.clip_seconds,
        pipeline.in_domain_threshold,
        sampling.of_config(config),
    )


def load_failure(exc: BaseException) -> str:
    """Why a checkpoint did not load, in one line, without torch's ``weights_only=False`` advice."""
    if isinstance(exc, pickle.UnpicklingError):
        return "it holds objects other than tensors and plain values, which are never unpickled"
    if isinstance(exc, EOFError):
        return "the file is cut short"
    if isinstance(exc, KeyError):
        return f"the entry {exc.args[0]!r} is missing"
    first_line = next(iter(str(exc).strip().splitlines()), "")
    if not first_line or "weights_only" in first_line:
        return type(exc).__name__
    return f"{type(exc).__name__}: {first_line[:300]}"

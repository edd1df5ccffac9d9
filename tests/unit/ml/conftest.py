from __future__ import annotations

import os

import pytest

from service.ml.config import PRESETS


@pytest.fixture(scope="session")
def ml_cache(tmp_path_factory):
    """Corpus cache private to the test session, so tests never depend on a developer's cache."""
    path = tmp_path_factory.mktemp("ml-cache")
    previous = os.environ.get("SOUNDALIKE_ML_CACHE")
    os.environ["SOUNDALIKE_ML_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("SOUNDALIKE_ML_CACHE", None)
    else:
        os.environ["SOUNDALIKE_ML_CACHE"] = previous


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, ml_cache):
    from service.ml.training import train

    # one thread: on a shared machine (CI next to other work) two contended threads are many times slower
    return train(preset="tiny", out=tmp_path_factory.mktemp("tiny") / "tiny.pt", seed=0, threads=1)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_checkpoint):
    from service.ml.pipeline import Pipeline

    return Pipeline.load(tiny_checkpoint)


@pytest.fixture(scope="session")
def tiny_config():
    return PRESETS["tiny"].model

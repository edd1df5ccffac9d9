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
def tiny_config():
    return PRESETS["tiny"].model

"""Fixtures for the registry tests: sessions on the real database and real checkpoint files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from service.db.engine import create_engine, session_factory


@pytest.fixture
async def sessions(database, settings, empty_tables):
    """A session factory on the (emptied) test database, as the application role."""
    engine = create_engine(database.app_url, settings.database)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def session(sessions):
    async with sessions() as session:
        yield session


@pytest.fixture
def checkpoint(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a checkpoint file with the given name and bytes (distinct bytes, distinct hash)."""

    def make(name: str, content: bytes | None = None) -> Path:
        path = tmp_path / "checkpoints" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if content is not None else f"weights of {name}\n".encode() * 1000)
        return path

    return make


@pytest.fixture
def real_checkpoint(tmp_path: Path, tiny_checkpoint: Path) -> Callable[[str], Path]:
    """Factory: a loadable checkpoint (the tiny model) with a zip comment of its own name: its own hash."""
    import shutil
    import zipfile

    def make(name: str) -> Path:
        path = tmp_path / "checkpoints" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tiny_checkpoint, path)
        with zipfile.ZipFile(path, "a") as archive:
            archive.comment = name.encode()
        return path

    return make

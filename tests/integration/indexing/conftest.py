"""Fixtures for the indexer's integration tests: an app-role connection, an index directory, demo latents."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from indexing.demo import load_demo
from indexing.source import ModelRef
from service.db.server import urls


@pytest.fixture
def app_conn(database, empty_tables):
    """The application role (as the API and workers write), autocommit."""
    with psycopg.connect(urls.libpq_url(database.app_url), autocommit=True) as conn:
        yield conn


@pytest.fixture
def index_dir(tmp_path):
    return tmp_path / "index"


@pytest.fixture
def demo(app_conn) -> ModelRef:
    """300 synthetic latents in 4 clusters for model ``demo``."""
    with app_conn.transaction():
        return load_demo(app_conn, "demo", n=300, clusters=4, seed=3).model


def latent_ids(conn, model: ModelRef) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM latent_embeddings WHERE model_id = %s ORDER BY id", (model.id,))]


def insert_latent(conn, model: ModelRef, owner: str = "alice", visibility: str = "public", seed: int = 0) -> int:
    """One generation + latent, as a worker writes them (in the caller's transaction if one is open)."""
    vector = np.random.default_rng(seed).standard_normal(model.latent_dim).astype(np.float32)
    gen = conn.execute(
        "INSERT INTO generations (owner, model_id, kind, status, visibility) "
        "VALUES (%s, %s, 'import', 'succeeded', %s) "
        "RETURNING id",
        (owner, model.id, visibility),
    ).fetchone()[0]
    return conn.execute(
        "INSERT INTO latent_embeddings (generation_id, model_id, embedding) VALUES (%s, %s, %s::float4[]::vector) "
        "RETURNING id",
        (gen, model.id, vector.tolist()),
    ).fetchone()[0]


def set_generation(conn, latent_id: int, column: str, value: str = "now()") -> None:
    conn.execute(
        f"UPDATE generations SET {column} = {value} WHERE id = (SELECT generation_id FROM latent_embeddings "
        "WHERE id = %s)",
        (latent_id,),
    )

"""Synthetic clustered latents, bulk-loaded by binary ``COPY`` into the real schema.

For development, the notebook and the benchmarks: a model row (created if the alias is new), one
``import`` generation per latent (owners and visibility spread so visibility rules have something to
filter), and a latent drawn around one of ``clusters`` random unit centres.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from indexing.source import ModelRef
from service.db.engine import copy_rows
from service.db.schema.models import LATENT_DIM

DEMO_OWNERS = ("alice", "bob", "carol")


class DemoAlreadyLoaded(ValueError):
    """The demo latents of this seed are in the database already (their generation ids derive from it)."""


@dataclass(frozen=True)
class DemoData:
    model: ModelRef
    rows: int
    clusters: int


def random_centres(clusters: int, dim: int = LATENT_DIM, seed: int = 0) -> np.ndarray:
    centres = np.random.default_rng(seed).standard_normal((clusters, dim)).astype(np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def clustered_vectors(n: int, centres: np.ndarray, spread: float = 0.35, seed: int = 0):
    """``n`` unit vectors around the given unit centres; returns (vectors float32[n, d], labels int[n])."""
    rng = np.random.default_rng(seed)
    clusters, dim = centres.shape
    labels = rng.integers(0, clusters, n)
    vectors = centres[labels] + rng.standard_normal((n, dim)).astype(np.float32) * (spread / np.sqrt(dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), labels


def ensure_model(conn: psycopg.Connection, alias: str) -> ModelRef:
    """The model with this alias, created as a local demo model when missing."""
    row = conn.execute("SELECT id, alias, latent_dim FROM models WHERE alias = %s", (alias,)).fetchone()
    if row is None:
        row = conn.execute(
            "INSERT INTO models (source_id, alias, source_type, version, metadata) "
            "VALUES (%s, %s, 'local', 'demo', %s) RETURNING id, alias, latent_dim",
            (f"demo:{alias}", alias, Jsonb({"demo": True})),
        ).fetchone()
    return ModelRef(*row)


def load_demo(
    conn: psycopg.Connection,
    alias: str = "demo",
    n: int = 2000,
    clusters: int = 8,
    seed: int = 0,
    public_fraction: float = 0.5,
    batch: int = 20000,
) -> DemoData:
    """Bulk-load ``n`` synthetic generations + latents for model ``alias`` in the caller's transaction."""
    register_vector(conn)
    model = ensure_model(conn, alias)
    rng = np.random.default_rng(seed + 1)
    centres = random_centres(clusters, model.latent_dim, seed)
    for start in range(0, n, batch):
        size = min(batch, n - start)
        vectors, labels = clustered_vectors(size, centres, seed=seed + 1 + start)
        gen_ids = [uuid.UUID(bytes=rng.bytes(16), version=4) for _ in range(size)]
        if start == 0:
            refuse_reload(conn, gen_ids[0], alias, seed)
        owners = rng.choice(DEMO_OWNERS, size)
        public = rng.random(size) < public_fraction
        copy_rows(
            conn,
            "generations",
            ["id", "owner", "model_id", "kind", "status", "visibility", "tags", "params"],
            ["uuid", "text", "int4", "text", "text", "text", "text[]", "jsonb"],
            (
                (
                    g,
                    str(o),
                    model.id,
                    "import",
                    "succeeded",
                    "public" if p else "private",
                    [f"demo-cluster-{lab}"],
                    Jsonb({"demo_cluster": int(lab)}),
                )
                for g, o, p, lab in zip(gen_ids, owners, public, labels, strict=True)
            ),
        )
        copy_rows(
            conn,
            "latent_embeddings",
            ["generation_id", "model_id", "embedding"],
            ["uuid", "int4", "vector"],
            ((g, model.id, v) for g, v in zip(gen_ids, vectors, strict=True)),
        )
    return DemoData(model, n, clusters)


def refuse_reload(conn: psycopg.Connection, first_id: uuid.UUID, alias: str, seed: int) -> None:
    if conn.execute("SELECT 1 FROM generations WHERE id = %s", (first_id,)).fetchone():
        raise DemoAlreadyLoaded(
            f"the demo latents of seed {seed} are already loaded (model {alias!r}); pass another --seed to add more"
        )

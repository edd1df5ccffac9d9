"""Search fixtures: a seeded catalogue of known latents in two models, inserted by COPY, with exact truth."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pytest

from service.db.engine import copy_rows

DIM = 512
DELETED_AT = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Item:
    id: uuid.UUID
    model_id: int
    vector: np.ndarray
    owner: str
    visibility: str
    tags: list[str]
    kind: str = "text2music"
    deleted: bool = False
    params: dict = field(default_factory=dict)


def clustered(rng: np.random.Generator, n: int, centres: int = 12, spread: float = 0.35) -> np.ndarray:
    """Unit vectors around a few random centres (like real latents: clustered, not uniform)."""
    means = rng.standard_normal((centres, DIM))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    points = means[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, DIM)) / np.sqrt(DIM)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def insert(owner_conn, items: list[Item]) -> None:
    from psycopg.types.json import Jsonb

    copy_rows(
        owner_conn,
        "generations",
        ["id", "owner", "model_id", "kind", "status", "visibility", "tags", "params", "deleted_at"],
        ["uuid", "text", "int4", "text", "text", "text", "text[]", "jsonb", "timestamptz"],
        (
            [
                i.id,
                i.owner,
                i.model_id,
                i.kind,
                "succeeded",
                i.visibility,
                i.tags,
                Jsonb(i.params),
                DELETED_AT if i.deleted else None,
            ]
            for i in items
        ),
    )
    copy_rows(
        owner_conn,
        "latent_embeddings",
        ["generation_id", "model_id", "embedding"],
        ["uuid", "int4", "vector"],
        ([i.id, i.model_id, i.vector] for i in items),
    )


def add_model(owner_conn, alias: str) -> int:
    return owner_conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version) VALUES (%s, %s, 'local', 'v1') RETURNING id",
        (alias, alias),
    ).fetchone()[0]


def visible_to(items: list[Item], owner: str, admin: bool = False) -> list[Item]:
    return [i for i in items if not i.deleted and (admin or i.owner == owner or i.visibility == "public")]


def exact_ids(items: list[Item], query: np.ndarray, k: int, exclude=()) -> list[uuid.UUID]:
    pool = [i for i in items if i.id not in set(exclude)]
    matrix = np.stack([i.vector for i in pool]).astype(np.float64)
    sims = matrix @ (query / np.linalg.norm(query)) / np.linalg.norm(matrix, axis=1)
    order = np.argsort(-sims, kind="stable")[:k]
    return [pool[j].id for j in order]


@dataclass
class Catalogue:
    model_a: int
    model_b: int
    items: list[Item]  # model A
    twins: list[Item]  # model B: near-copies of model A's vectors (closest if models were ever mixed)


@pytest.fixture
def catalogue(owner_conn, tiny_model) -> Catalogue:
    """300 items in the tiny model (alice private/public, bob private/public, some deleted) and 100 twins in a
    second model whose vectors nearly equal model-A vectors."""
    rng = np.random.default_rng(5)
    vectors = clustered(rng, 300)
    owners = ["alice", "bob"]
    items = []
    for n, vector in enumerate(vectors):
        items.append(
            Item(
                id=uuid.uuid4(),
                model_id=tiny_model["id"],
                vector=vector,
                owner=owners[n % 2],
                visibility="public" if n % 3 == 0 else "private",
                tags=[
                    "piano" if n % 4 == 0 else "guitar",
                    "minor" if n % 5 == 0 else "major",
                    f"{60 + n % 7 * 10} bpm",
                ],
                kind="import" if n % 10 == 0 else "text2music",
                deleted=n % 17 == 0,
                params={"steps": n % 30},
            )
        )
    model_b = add_model(owner_conn, "other")
    twins = [
        Item(
            id=uuid.uuid4(),
            model_id=model_b,
            vector=(i.vector + 1e-3).astype(np.float32),
            owner="alice",
            visibility="public",
            tags=list(i.tags),
        )
        for i in items[:100]
    ]
    insert(owner_conn, items + twins)
    return Catalogue(model_a=tiny_model["id"], model_b=model_b, items=items, twins=twins)

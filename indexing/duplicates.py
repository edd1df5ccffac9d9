"""Near-duplicates: pairs of latents of one model whose cosine similarity is at least a threshold.

FAISS range search of the mirror against itself, in query batches (memory bounded by the batch and the
number of pairs found). Each pair is reported once (smaller id first), with the generations it maps to.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from indexing.errors import IndexingError
from indexing.manifest import timestamp
from indexing.source import ModelRef
from indexing.sync import connect, read_mirror

QUERY_BATCH = 4096


@dataclass(frozen=True)
class Pair:
    a: int
    b: int
    similarity: float
    generation_a: str
    generation_b: str


def find_pairs(
    url: str, index_dir: Path, model: ModelRef, threshold: float, *, sync_first: bool = True, progress=None
) -> list[Pair]:
    """Pairs with cosine similarity above ``threshold`` in the model's mirror (synced first by default)."""
    if not -1.0 <= threshold <= 1.0:
        raise IndexingError(f"--threshold must be a cosine similarity in [-1, 1], got {threshold}")
    current = read_mirror(url, index_dir, model, sync_first=sync_first)
    ids, vectors = current.ids(), current.vectors()
    tick = progress(len(ids)) if progress else None
    found: list[tuple[int, int, float]] = []
    for start in range(0, len(ids), QUERY_BATCH):
        queries = vectors[start : start + QUERY_BATCH]
        lims, sims, hits = current.index.range_search(queries, float(threshold))
        sources = np.repeat(ids[start : start + len(queries)], np.diff(lims).astype(np.int64))
        keep = sources < hits  # each pair once; drops self-matches
        found.extend(zip(sources[keep].tolist(), hits[keep].tolist(), sims[keep].tolist(), strict=True))
        if tick:
            tick(len(queries))
    found.sort(key=lambda p: (-p[2], p[0], p[1]))
    generations = _generation_ids(url, {i for a, b, _ in found for i in (a, b)})
    return [Pair(a, b, round(min(s, 1.0), 6), generations.get(a, ""), generations.get(b, "")) for a, b, s in found]


def _generation_ids(url: str, latent_ids: set[int]) -> dict[int, str]:
    if not latent_ids:
        return {}
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT id, generation_id::text FROM latent_embeddings WHERE id = ANY(%s)", (sorted(latent_ids),)
        ).fetchall()
    return dict(rows)


def write_report(path: Path, model: ModelRef, threshold: float, pairs: list[Pair]) -> None:
    report = {
        "model": model.alias,
        "threshold": threshold,
        "created_at": timestamp(),
        "count": len(pairs),
        "pairs": [asdict(p) for p in pairs],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)

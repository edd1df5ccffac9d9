"""Offline clustering: spherical k-means over a model's mirror, a 2-D PCA map, written back in one transaction.

The run, its centroids and every latent's assignment (cluster, similarity to the centroid, x, y) are
inserted in a single transaction, so a crash leaves the previous run active (the newest run of a model is
the active one). Runs older than the newest ``keep_runs`` are deleted in that same transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from indexing.errors import IndexingError
from indexing.failpoints import failpoint
from indexing.source import ModelRef
from indexing.sync import connect, read_mirror
from service.db.engine import copy_rows

log = logging.getLogger(__name__)

PCA_TRAIN_MAX = 65536  # points used to fit the 2-D projection
MAX_POINTS_PER_CENTROID = 256  # FAISS's default training subsample
SEEDING_POINTS_PER_CENTROID = 32  # k-means++ seeds on a smaller subsample (its cost is k × trials × sample)


@dataclass(frozen=True)
class ClusteringResult:
    run_id: int
    model: str
    k: int
    n_points: int
    inertia: float  # sum over latents of (1 - cosine similarity to the assigned centroid)
    sizes: list[int]
    seconds: float


@dataclass(frozen=True)
class Clustering:
    """What k-means and the projection produced, before anything is written."""

    ids: np.ndarray  # int64[n] latent ids
    labels: np.ndarray  # int64[n] in 0..k-1
    scores: np.ndarray  # float32[n] cosine similarity to the assigned centroid
    xy: np.ndarray  # float32[n, 2]
    centroids: np.ndarray  # float32[k, d], unit norm
    sizes: np.ndarray  # int64[k]

    @property
    def inertia(self) -> float:
        return float(np.sum(1.0 - self.scores, dtype=np.float64))


def check_k(k: int, n: int, alias: str) -> None:
    if n == 0:
        raise IndexingError(f"model {alias!r} has no live latents: nothing to cluster")
    if k < 1:
        raise IndexingError(f"k must be at least 1, got {k}")
    if k > n:
        raise IndexingError(f"k={k} is larger than the number of latents of model {alias!r} ({n}): choose k <= {n}")


def kmeans_plus_plus(vectors: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding for cosine distance (as scikit-learn does for Euclidean): at each step draw
    ``2 + log k`` candidates with probability ∝ (1 - max cos)² and keep the one that lowers the potential most."""
    n = len(vectors)
    trials = 2 + int(np.log(k))
    centres = np.empty((k, vectors.shape[1]), dtype=np.float32)
    centres[0] = vectors[rng.integers(n)]
    distance = np.clip(1.0 - vectors @ centres[0], 0.0, None)
    for i in range(1, k):
        weights = distance.astype(np.float64) ** 2
        total = weights.sum()
        if total <= 0:
            centres[i] = vectors[rng.integers(n)]
            continue
        candidates = rng.choice(n, size=trials, p=weights / total)
        options = np.minimum(distance[None, :], np.clip(1.0 - vectors[candidates] @ vectors.T, 0.0, None))
        best = int(np.argmin((options.astype(np.float64) ** 2).sum(axis=1)))
        centres[i], distance = vectors[candidates[best]], options[best]
    return centres


def _sample(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return np.sort(rng.choice(n, size, replace=False))


def kmeans(
    ids: np.ndarray, vectors: np.ndarray, k: int, niter: int, seed: int, nredo: int = 1, init: str = "k-means++"
) -> Clustering:
    """Spherical k-means (seeded) over unit vectors, then assignment of every point and a 2-D PCA.

    ``init="k-means++"`` seeds the centres on FAISS's training subsample (far fewer merged or split clusters
    than FAISS's uniform random start); ``init="random"`` keeps FAISS's own start (best of ``nredo``)."""
    n, d = vectors.shape
    rng = np.random.default_rng(seed)
    km = faiss.Kmeans(
        d,
        k,
        niter=niter,
        seed=seed,
        spherical=True,
        verbose=False,
        nredo=nredo,
        max_points_per_centroid=MAX_POINTS_PER_CENTROID,
    )
    if init == "k-means++":
        seeding = (
            vectors
            if n <= k * SEEDING_POINTS_PER_CENTROID
            else vectors[_sample(rng, n, k * SEEDING_POINTS_PER_CENTROID)]
        )
        km.train(vectors, init_centroids=kmeans_plus_plus(seeding, k, rng))
    elif init == "random":
        km.train(vectors)
    else:
        raise IndexingError(f"init must be 'k-means++' or 'random', got {init!r}")
    centroids = km.centroids.astype(np.float32)
    faiss.normalize_L2(centroids)
    assigner = faiss.IndexFlatIP(d)
    assigner.add(centroids)
    scores, labels = assigner.search(vectors, 1)
    pca = faiss.PCAMatrix(d, 2)
    sample = vectors if n <= PCA_TRAIN_MAX else vectors[rng.choice(n, PCA_TRAIN_MAX, replace=False)]
    pca.train(np.ascontiguousarray(sample))
    xy = pca.apply(vectors)
    labels = labels[:, 0].astype(np.int64)
    return Clustering(ids, labels, scores[:, 0], xy, centroids, np.bincount(labels, minlength=k))


def cluster_model(
    url: str,
    index_dir: Path,
    model: ModelRef,
    k: int,
    *,
    niter: int = 20,
    seed: int = 1234,
    nredo: int = 1,
    init: str = "k-means++",
    keep_runs: int = 2,
    sync_first: bool = True,
) -> ClusteringResult:
    """Cluster the model's mirror (synced first by default) and write the run back as the active one."""
    started = time.perf_counter()
    current = read_mirror(url, index_dir, model, sync_first=sync_first)
    check_k(k, current.index.ntotal, model.alias)
    ids, vectors = current.ids(), current.vectors()
    watermark = current.manifest.watermark
    del current
    result = kmeans(ids, vectors, k, niter, seed, nredo, init)
    del vectors
    params = {
        "spherical": True,
        "nredo": nredo,
        "init": init,
        "metric": "inner_product",
        "max_points_per_centroid": MAX_POINTS_PER_CENTROID,
        "projection": "faiss.PCAMatrix(d, 2)",
        "faiss": faiss.__version__,
    }
    with connect(url) as conn:
        elapsed = time.perf_counter() - started
        run_id, written = write_run(
            conn,
            model,
            result,
            k=k,
            niter=niter,
            seed=seed,
            params=params,
            watermark=watermark,
            seconds=elapsed,
            keep_runs=keep_runs,
        )
    log.info("clustering run %d for %s: k=%d over %d latents", run_id, model.alias, k, written)
    return ClusteringResult(
        run_id, model.alias, k, written, result.inertia, result.sizes.tolist(), time.perf_counter() - started
    )


def write_run(
    conn: psycopg.Connection,
    model: ModelRef,
    c: Clustering,
    *,
    k: int,
    niter: int,
    seed: int,
    params: dict,
    watermark: int,
    seconds: float,
    keep_runs: int,
) -> tuple[int, int]:
    """One transaction: run, centroids, assignments (latents deleted meanwhile are skipped), old runs pruned."""
    with conn.transaction():
        run_id = conn.execute(
            "INSERT INTO cluster_runs (model_id, k, niter, seed, params, n_points, inertia, sizes, mirror_watermark,"
            " duration_seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (model.id, k, niter, seed, Jsonb(params), len(c.ids), c.inertia, c.sizes.tolist(), watermark, seconds),
        ).fetchone()[0]
        rows = ((run_id, label, int(size), c.centroids[label]) for label, size in enumerate(c.sizes))
        copy_rows(conn, "clusters", ["run_id", "label", "size", "centroid"], ["int4", "int4", "int4", "vector"], rows)
        cluster_ids = np.zeros(k, dtype=np.int64)
        for cluster_id, label in conn.execute("SELECT id, label FROM clusters WHERE run_id = %s", (run_id,)):
            cluster_ids[label] = cluster_id
        written = conn.execute(
            "INSERT INTO cluster_assignments (run_id, latent_id, cluster_id, score, x, y) "
            "SELECT %s, u.latent_id, u.cluster_id, u.score, u.x, u.y "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::real[], %s::real[], %s::real[]) "
            "AS u(latent_id, cluster_id, score, x, y) JOIN latent_embeddings l ON l.id = u.latent_id",
            (
                run_id,
                c.ids.tolist(),
                cluster_ids[c.labels].tolist(),
                c.scores.tolist(),
                c.xy[:, 0].tolist(),
                c.xy[:, 1].tolist(),
            ),
        ).rowcount
        if written != len(c.ids):  # latents deleted since the mirror was read: recount from what was written
            _recount(conn, run_id)
        failpoint("cluster:before-commit")
        conn.execute(
            "DELETE FROM cluster_runs WHERE model_id = %s AND id NOT IN "
            "(SELECT id FROM cluster_runs WHERE model_id = %s ORDER BY id DESC LIMIT %s)",
            (model.id, model.id, max(keep_runs, 1)),
        )
    return run_id, written


def _recount(conn: psycopg.Connection, run_id: int) -> None:
    conn.execute(
        "UPDATE clusters c SET size = (SELECT count(*) FROM cluster_assignments a WHERE a.cluster_id = c.id) "
        "WHERE c.run_id = %s",
        (run_id,),
    )
    conn.execute(
        "UPDATE cluster_runs r SET sizes = (SELECT array_agg(size ORDER BY label) FROM clusters WHERE run_id = r.id), "
        "n_points = (SELECT count(*) FROM cluster_assignments WHERE run_id = r.id) WHERE r.id = %s",
        (run_id,),
    )

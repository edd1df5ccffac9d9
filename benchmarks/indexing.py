"""Batch indexer benchmark: 100k × 512 latents in the real schema on a throw-away embedded PostgreSQL.

Measures, in one run and on the same data:
  - full sync (``index rebuild``; interleaved rounds, best of each) against two raw baselines that only read
    and ``index.add``:
    (a) a binary psycopg cursor over ``SELECT id, embedding`` (what pgvector-python users write), and
    (b) the same binary ``COPY`` decoding the sync uses, without the live-item join, normalisation,
        serialisation, checksum or durable write; the ratio is quoted against the faster baseline;
  - incremental sync of 1,000 changes (600 inserts, 200 soft-deletes, 200 archivals);
  - verify of the whole mirror;
  - spherical k-means k=256, niter=20 (greedy k-means++ seeding), with the write-back of the run, and its
    peak resident memory, FAISS limited to 2 threads.

Run: ``.venv/bin/python benchmarks/indexing.py [--rows 100000]`` (``make bench`` runs every benchmark).
Writes ``benchmarks/results/indexing.json`` and ``docs/img/indexing-benchmark.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexing.clustering import cluster_model  # noqa: E402
from indexing.demo import load_demo  # noqa: E402
from indexing.scratch import scratch_database  # noqa: E402
from indexing.sync import connect, sync_model  # noqa: E402
from indexing.verify import verify_model  # noqa: E402
from service.db.schema.models import LATENT_HNSW_INDEX  # noqa: E402

THREADS = 2
HNSW = LATENT_HNSW_INDEX
RESULTS = ROOT / "benchmarks" / "results" / "indexing.json"
PLOT = ROOT / "docs" / "img" / "indexing-benchmark.png"


def best_of(repeats: int, fn):
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), times, result


def baseline_cursor(url: str, model_id: int) -> int:
    """Raw read with a binary cursor (pgvector's numpy loader) + IndexFlatIP.add, in 16k batches."""
    index = faiss.IndexIDMap(faiss.IndexFlatIP(512))
    with connect(url) as conn, conn.cursor(binary=True) as cur:
        cur.execute("SELECT id, embedding FROM latent_embeddings WHERE model_id = %s", (model_id,))
        while rows := cur.fetchmany(16384):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            index.add_with_ids(np.stack([r[1].to_numpy() for r in rows]).astype(np.float32), ids)
    return index.ntotal


def baseline_copy(url: str, model_id: int) -> int:
    """Raw read with binary COPY decoded by numpy + IndexFlatIP.add (no join, no normalise, no write)."""
    index = faiss.IndexIDMap(faiss.IndexFlatIP(512))
    with connect(url) as conn:
        for ids, vectors in _iter_all(conn, model_id):
            index.add_with_ids(vectors, ids)
    return index.ntotal


def _iter_all(conn, model_id: int):
    from psycopg import sql

    from indexing.source import _CopyDecoder

    decoder = _CopyDecoder(16384)
    query = sql.SQL("COPY (SELECT id, embedding FROM latent_embeddings WHERE model_id = {}) TO STDOUT (FORMAT BINARY)")
    with conn.cursor() as cur, cur.copy(query.format(sql.Literal(model_id))) as copy:
        for chunk in copy:
            yield from decoder.feed(chunk)
    yield from decoder.finish()


def full_index_bytes(index_dir: Path, model_id: int) -> int:
    manifest = json.loads((index_dir / f"model-{model_id}.json").read_text())
    return manifest["bytes"]


def make_changes(url: str, alias: str, seed: int) -> None:
    """1,000 changes: 600 new latents, 200 soft-deleted and 200 archived generations."""
    with connect(url) as conn:
        load_demo(conn, alias, n=600, clusters=256, seed=seed)
        for column in ("deleted_at", "archived_at"):
            conn.execute(
                f"UPDATE generations SET {column} = now() WHERE id IN (SELECT id FROM generations "
                "WHERE deleted_at IS NULL AND archived_at IS NULL ORDER BY random() LIMIT 200)"
            )
        conn.commit()


class PeakRss:
    """Samples this process's resident memory every 10 ms while in the block."""

    def __enter__(self):
        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.before = self.process.memory_info().rss
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    faiss.omp_set_num_threads(THREADS)
    results: dict = {
        "rows": args.rows,
        "dim": 512,
        "faiss_threads": THREADS,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "faiss": faiss.__version__,
    }

    with scratch_database("bench") as db:
        url, owner_url, index_dir = db.app_url, db.migration_url, db.root / "index"

        # Bulk load as DESIGN.md says: drop the HNSW index, COPY, build the index afterwards.
        with connect(owner_url) as conn:
            hnsw = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (HNSW,)).fetchone()[0]
            conn.execute(f"DROP INDEX {HNSW}")
            conn.commit()
        started = time.perf_counter()
        with connect(url) as conn:
            model = load_demo(conn, "bench", n=args.rows, clusters=args.k, seed=0).model
            conn.commit()
        load = time.perf_counter() - started
        started = time.perf_counter()
        with connect(owner_url) as conn:
            conn.autocommit = True
            conn.execute(hnsw)
            conn.execute("VACUUM ANALYZE")
        hnsw_s = time.perf_counter() - started
        print(f"HNSW build after the load: {hnsw_s:.1f}s")
        results["bulk_load"] = {
            "seconds": load,
            "rows_per_second": args.rows / load,
            "hnsw_build_seconds": hnsw_s,
            "note": "binary COPY of generations + latents (change-log trigger on), HNSW built afterwards",
        }
        print(f"bulk load (COPY): {args.rows} rows in {load:.1f}s ({args.rows / load:,.0f}/s)")

        # Interleaved (cursor, COPY, sync) rounds, best of each: the shared CPU's load drifts during a run.
        cursor_all, copy_all, full_all = [], [], []
        for _ in range(args.repeats):
            cursor_all += best_of(1, lambda: baseline_cursor(url, model.id))[1]
            copy_all += best_of(1, lambda: baseline_copy(url, model.id))[1]
            run_s, _, full = best_of(1, lambda: sync_model(url, index_dir, model, full=True))
            full_all.append(run_s)
        cursor_s, copy_s, full_s = min(cursor_all), min(copy_all), min(full_all)
        baseline = min(cursor_s, copy_s)
        results["full_sync"] = {
            "seconds": full_s,
            "runs": full_all,
            "vectors": full.count,
            "baseline_cursor_seconds": cursor_s,
            "baseline_cursor_runs": cursor_all,
            "baseline_copy_seconds": copy_s,
            "baseline_copy_runs": copy_all,
            "speed_vs_best_baseline": baseline / full_s,
            "speed_vs_cursor_baseline": cursor_s / full_s,
            "index_file_bytes": full_index_bytes(index_dir, model.id),
        }
        print(
            f"full sync {full_s:.2f}s | baselines: cursor {cursor_s:.2f}s, COPY {copy_s:.2f}s | speed vs best "
            f"baseline {baseline / full_s:.2f}x (target >= 0.7), vs cursor {cursor_s / full_s:.2f}x"
        )

        incremental = []
        for i in range(3):
            make_changes(url, "bench", seed=1000 + i)
            result = sync_model(url, index_dir, model)
            assert result.mode == "incremental", result
            incremental.append({"seconds": result.seconds, "upserted": result.upserted, "removed": result.removed})
        inc = statistics.median(r["seconds"] for r in incremental)
        results["incremental_sync_1k"] = {"median_seconds": inc, "runs": incremental, "target_seconds": 2.0}
        print(f"incremental sync of 1k changes: median {inc:.2f}s over 3 runs (target < 2s)")

        started = time.perf_counter()
        report = verify_model(url, index_dir, model)
        verify_s = time.perf_counter() - started
        assert report.ok, report.summary()
        results["verify"] = {"seconds": verify_s, "db_count": report.db_count, "status": report.status}
        print(f"verify: {verify_s:.2f}s ({report.status}, {report.db_count} latents)")

        with PeakRss() as rss:
            started = time.perf_counter()
            run = cluster_model(url, index_dir, model, k=args.k, niter=20, seed=1, sync_first=False)
            cluster_s = time.perf_counter() - started
        results["kmeans"] = {
            "k": args.k,
            "niter": 20,
            "seconds_with_write_back": cluster_s,
            "n_points": run.n_points,
            "peak_rss_mb": rss.peak / 2**20,
            "rss_increase_mb": (rss.peak - rss.before) / 2**20,
            "target_seconds": 30.0,
            "sizes_min_max": [min(run.sizes), max(run.sizes)],
        }
        print(
            f"k-means k={args.k} niter=20 ({THREADS} threads) + write-back: {cluster_s:.1f}s (target < 30s), "
            f"peak RSS {rss.peak / 2**20:.0f} MB (+{(rss.peak - rss.before) / 2**20:.0f} MB during)"
        )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    _plot(results)
    print(f"results: {RESULTS.relative_to(ROOT)}, plot: {PLOT.relative_to(ROOT)}")


def _plot(r: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        "baseline:\ncursor + add",
        "baseline:\nCOPY + add",
        "full sync",
        "incremental\n1k changes",
        "verify",
        f"k-means k={r['kmeans']['k']}\n+ write-back",
    ]
    values = [
        r["full_sync"]["baseline_cursor_seconds"],
        r["full_sync"]["baseline_copy_seconds"],
        r["full_sync"]["seconds"],
        r["incremental_sync_1k"]["median_seconds"],
        r["verify"]["seconds"],
        r["kmeans"]["seconds_with_write_back"],
    ]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    bars = ax.bar(labels, values, color=["#bbb", "#bbb", "#3a7", "#3a7", "#37a", "#a63"])
    ax.bar_label(bars, fmt="%.2f s")
    ax.set_ylabel("seconds")
    ax.set_title(f"Batch indexer, {r['rows']:,} × 512 latents, 2 shared cores")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)


if __name__ == "__main__":
    main()

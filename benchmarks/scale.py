"""A million latents on one machine: pgvector's HNSW index over `vector`, over a `halfvec` expression and over a
binary-quantised expression with re-ranking, against FAISS HNSW on the same data in the same run.

    .venv/bin/python benchmarks/scale.py [--rows 1000000] [--queries 200] [--variants vector,halfvec,binary]
                                         [--ef-search 200,400,800] [--m 16] [--ef-construction 64]

Clustered 512-d unit latents are bulk-loaded by binary COPY into the real schema of a throw-away embedded
PostgreSQL (migrations applied, the migration's HNSW index dropped for the load). Then, one variant at a time
(only its index present): the build time, the index and table sizes, PostgreSQL's memory (the PSS of the server
and its backends, measured with 8 connections open after the queries), recall@10 against an exact numpy scan, and
queries/s and latency at concurrency 1 and 8. The statements are the bare index queries (no visibility join;
benchmarks/search.py measures the app's full statements), at the app's ef_search or each of --ef-search. FAISS
HNSW (same m, ef_construction and ef_search) is the anchor: 1 query at a time, and 8 threads of one query each.
Prints the table (first ef_search) with the ratios to FAISS and to `vector`, the memory per million latents, and
recall and throughput against ef_search; writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402
from pgvector.psycopg import register_vector_async  # noqa: E402

from benchmarks._harness import throwaway_database, write_result  # noqa: E402
from benchmarks.search import summary  # noqa: E402
from service.db.engine import connect_sync, copy_rows  # noqa: E402
from service.db.schema.models import HNSW_EF_CONSTRUCTION, HNSW_M, LATENT_HNSW_INDEX  # noqa: E402
from service.db.server import urls  # noqa: E402
from service.db.server.embedded import EmbeddedPostgres, run_pg_tool  # noqa: E402
from service.domain.discovery.search import scan_settings  # noqa: E402

DIM, K, CONCURRENCY = 512, 10, 8
CHUNK = 50_000  # rows generated, COPYed and scanned for the exact answer at a time (a million at once is ~10 GB)
EF_SEARCH = int(scan_settings(K)["ef_search"])


@dataclass(frozen=True)
class Graph:
    """The HNSW build parameters (the migration's by default)."""

    m: int = HNSW_M
    ef_construction: int = HNSW_EF_CONSTRUCTION

    @property
    def with_clause(self) -> str:
        return f"WITH (m = {self.m}, ef_construction = {self.ef_construction})"


HALF = f"embedding::halfvec({DIM})"
BITS = f"binary_quantize(embedding)::bit({DIM})"
# name -> (index expression and operator class, the query); %(q)s is the query vector, %(pool)s the re-rank pool
VARIANTS = {
    "vector": (
        "embedding vector_cosine_ops",
        "SELECT generation_id FROM latent_embeddings ORDER BY embedding <=> %(q)s LIMIT 10",
    ),
    "halfvec": (
        f"({HALF}) halfvec_cosine_ops",
        f"SELECT generation_id FROM latent_embeddings ORDER BY {HALF} <=> %(q)s::halfvec({DIM}) LIMIT 10",
    ),
    "binary": (
        f"({BITS}) bit_hamming_ops",
        f"SELECT generation_id FROM (SELECT generation_id, embedding FROM latent_embeddings "
        f"ORDER BY {BITS} <~> binary_quantize(%(q)s::vector)::bit({DIM}) LIMIT %(pool)s) AS candidates "
        "ORDER BY embedding <=> %(q)s LIMIT 10",
    ),
}


def latents(seed: int, n: int, centres: int = 100):
    """Clustered unit vectors, ``CHUNK`` rows at a time, float32 throughout (the same recipe as search.py's)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, DIM), dtype=np.float32)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        noise = rng.standard_normal((size, DIM), dtype=np.float32) * np.float32(0.6 / np.sqrt(DIM))
        points = means[rng.integers(0, centres, size)] + noise
        yield points / np.linalg.norm(points, axis=1, keepdims=True)


def row_id(i: int) -> uuid.UUID:
    """Row i's generation id: its number, so an answer maps back to the row without a million-entry dict."""
    return uuid.UUID(int=i + 1)


def load(handle, vectors: np.ndarray) -> tuple[float, int]:
    """COPY the generations and their latents (the migration's HNSW index dropped first, as in operations)."""
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        model_id = conn.execute(
            "INSERT INTO models (source_id, alias, source_type, version, is_default) "
            "VALUES ('bench', 'bench', 'local', 'v1', true) RETURNING id"
        ).fetchone()[0]
        conn.execute(f"DROP INDEX {LATENT_HNSW_INDEX}")
        started = time.perf_counter()
        for start in range(0, len(vectors), CHUNK):
            part = range(start, min(start + CHUNK, len(vectors)))
            with conn.transaction():
                copy_rows(
                    conn,
                    "generations",
                    ["id", "owner", "model_id", "kind", "status", "visibility"],
                    ["uuid", "text", "int4", "text", "text", "text"],
                    ([row_id(i), "bench", model_id, "import", "succeeded", "public"] for i in part),
                )
                copy_rows(
                    conn,
                    "latent_embeddings",
                    ["generation_id", "model_id", "embedding"],
                    ["uuid", "int4", "vector"],
                    ([row_id(i), model_id, vectors[i]] for i in part),
                )
        copied = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE latent_embeddings")
        conn.execute("ANALYZE generations")
    return copied, model_id


def exact_top(vectors: np.ndarray, queries: np.ndarray) -> list[set[int]]:
    """The true 10 nearest rows of each query (cosine = dot product of unit vectors), scanned CHUNK rows at a time."""
    best_sims = np.full((len(queries), K), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), K), dtype=np.int64)
    for start in range(0, len(vectors), CHUNK):
        sims = queries @ vectors[start : start + CHUNK].T
        both_sims = np.concatenate([best_sims, sims], axis=1)
        rows = np.arange(start, start + sims.shape[1])
        both_rows = np.concatenate([best_rows, np.broadcast_to(rows, sims.shape)], axis=1)
        keep = np.argpartition(-both_sims, K - 1, axis=1)[:, :K]
        best_sims = np.take_along_axis(both_sims, keep, axis=1)
        best_rows = np.take_along_axis(both_rows, keep, axis=1)
    return [set(row.tolist()) for row in best_rows]


# -- FAISS, the anchor ----------------------------------------------------------------------------------------


def faiss_side(vectors: np.ndarray, queries, warm, truth: list[set[int]], efs: list[int], graph: Graph) -> dict:
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    index = faiss.IndexHNSWFlat(DIM, graph.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = graph.ef_construction
    started = time.perf_counter()
    index.add(vectors)
    built = time.perf_counter() - started
    size = len(faiss.serialize_index(index))
    faiss.omp_set_num_threads(1)  # one query per thread, as one query per PostgreSQL backend

    def one(i: int, batch: np.ndarray) -> tuple[float, set[int]]:
        started = time.perf_counter()
        _, rows = index.search(batch[i : i + 1], K)
        return time.perf_counter() - started, set(rows[0].tolist())

    sweep = {}
    for ef in efs:
        index.hnsw.efSearch = ef
        sweep[ef] = {}
        for concurrency in (1, CONCURRENCY):
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(lambda i: one(i, warm), range(len(warm))))
                started = time.perf_counter()
                answers = list(pool.map(lambda i: one(i, queries), range(len(queries))))
                wall = time.perf_counter() - started
            sweep[ef][f"c{concurrency}"] = summary([a[0] for a in answers], wall, [a[1] for a in answers], truth)
    return {"build_s": built, "index_bytes": size, **sweep[efs[0]], "ef_search": sweep}


# -- PostgreSQL -------------------------------------------------------------------------------------------------


def server_memory(root: Path) -> dict:
    """Proportional (PSS) and resident memory of the PostgreSQL server: the postmaster and all its children."""
    postmaster = psutil.Process(int((root / "pg" / "postmaster.pid").read_text().split()[0]))
    pss = rss = 0
    for process in [postmaster, *postmaster.children(recursive=True)]:
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        pss, rss = pss + info.pss, max(rss, info.rss)
    return {"pss_bytes": pss, "largest_rss_bytes": rss}


def tune_server(root: Path, shared_buffers: str, maintenance_work_mem: str) -> None:
    """Server settings for a million latents (ALTER SYSTEM, then a restart that keeps the start-up options)."""
    with psycopg.connect(EmbeddedPostgres(root / "pg").url(driver=""), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
        conn.execute(f"ALTER SYSTEM SET maintenance_work_mem = '{maintenance_work_mem}'")
        conn.execute(f"ALTER SYSTEM SET max_parallel_maintenance_workers = {max(1, (os.cpu_count() or 2) - 1)}")
    server = EmbeddedPostgres(root / "pg")
    run_pg_tool(
        "pg_ctl", "-D", str(server.data_dir), "-l", str(server.log_file), "-w", "-t", "120", "restart", timeout=180
    )


async def run_queries(conns: list, sql: str, queries: np.ndarray, pool: int) -> tuple[list[float], float, list]:
    latencies, found, queue = [0.0] * len(queries), [set()] * len(queries), list(range(len(queries)))

    async def worker(conn) -> None:
        while queue:
            i = queue.pop()
            started = time.perf_counter()
            rows = await (await conn.execute(sql, {"q": queries[i], "pool": pool})).fetchall()
            latencies[i] = time.perf_counter() - started
            found[i] = {row[0].int - 1 for row in rows}

    started = time.perf_counter()
    await asyncio.gather(*(worker(conn) for conn in conns))
    return latencies, time.perf_counter() - started, found


async def measure_queries(handle, root: Path, sql: str, queries, warm, truth, pool: int, efs: list[int]) -> dict:
    url = urls.libpq_url(handle.app_url)
    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(CONCURRENCY)]
    sweep = {}
    try:
        for conn in conns:
            await register_vector_async(conn)
        for ef in efs:
            sweep[ef] = {}
            for conn in conns:
                await conn.execute(f"SET hnsw.ef_search = {max(ef, pool)}")
            for concurrency in (1, CONCURRENCY):
                await run_queries(conns[:concurrency], sql, warm, pool)  # other queries: the index read, not these
                found = await run_queries(conns[:concurrency], sql, queries, pool)
                sweep[ef][f"c{concurrency}"] = summary(*found, truth)
        memory = server_memory(root)  # while the 8 backends still map what they read
    finally:
        for conn in conns:
            await conn.close()
    return {**sweep[efs[0]], "memory": memory, "ef_search": sweep}


def pg_variant(handle, root: Path, name: str, queries, warm, truth, pool: int, efs: list[int], graph: Graph) -> dict:
    opclass, sql = VARIANTS[name]
    index = f"bench_scale_{name}_hnsw"
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(f"CREATE INDEX {index} ON latent_embeddings USING hnsw ({opclass}) {graph.with_clause}")
        built = time.perf_counter() - started
        index_bytes, table_bytes = conn.execute(
            "SELECT pg_relation_size(%s::regclass), pg_table_size('latent_embeddings')", (index,)
        ).fetchone()
        plan = "\n".join(
            r[0] for r in conn.execute("EXPLAIN " + sql, {"q": np.asarray(queries[0]), "pool": pool}).fetchall()
        )
    try:
        if index not in plan:
            raise RuntimeError(f"{name}: the query does not use {index}:\n{plan}")
        result = asyncio.run(measure_queries(handle, root, sql, queries, warm, truth, pool, efs))
    finally:
        with connect_sync(handle.migration_url, autocommit=True) as conn:
            conn.execute(f"DROP INDEX {index}")
    return {"build_s": built, "index_bytes": index_bytes, "table_bytes": table_bytes, "plan": plan, **result}


# -- report -----------------------------------------------------------------------------------------------------


def per_million(nbytes: float, rows: int) -> float:
    return nbytes / rows * 1_000_000 / 2**30


def print_table(rows: int, copied: float, faiss_result: dict, pg: dict, ef: int) -> None:
    anchor = faiss_result
    print(f"\n{rows:,} latents of {DIM} dims; COPY {copied:.1f} s ({rows / copied:,.0f} rows/s); ef_search {ef}")
    header = (
        f"{'side':9} {'build s':>8} {'index MB':>9} {'GB/1M':>6} {'PG PSS MB':>9} {'R@10':>6} "
        f"{'c1 q/s':>7} {'p50 ms':>7} {'c8 q/s':>7} {'p99 ms':>7} {'c1/FAISS':>8} {'c8/FAISS':>8} "
        f"{'c8/vector':>9} {'q/s/GB':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, r in [("faiss", anchor), *pg.items()]:
        gigabytes = r["index_bytes"] / 2**30
        pss = f"{r['memory']['pss_bytes'] / 2**20:9.0f}" if "memory" in r else f"{'-':>9}"
        vs_vector = f"{r['c8']['qps'] / pg['vector']['c8']['qps']:9.2f}" if "vector" in pg else f"{'-':>9}"
        print(
            f"{name:9} {r['build_s']:8.1f} {r['index_bytes'] / 2**20:9.0f} {per_million(r['index_bytes'], rows):6.2f} "
            f"{pss} {r['c1']['recall_at_10']:6.3f} {r['c1']['qps']:7.1f} {r['c1']['p50_ms']:7.2f} "
            f"{r['c8']['qps']:7.1f} {r['c8']['p99_ms']:7.2f} {r['c1']['qps'] / anchor['c1']['qps']:8.2f} "
            f"{r['c8']['qps'] / anchor['c8']['qps']:8.2f} {vs_vector} {r['c8']['qps'] / gigabytes:7.0f}"
        )
    print("\nmemory per million latents (to keep the table and one index in RAM):")
    for name, r in pg.items():
        table, index = per_million(r["table_bytes"], rows), per_million(r["index_bytes"], rows)
        print(f"  {name:8} table {table:5.2f} GB + index {index:5.2f} GB = {table + index:5.2f} GB")
    print(f"  faiss    index {per_million(anchor['index_bytes'], rows):5.2f} GB (vectors + graph, in the process)")


def print_sweep(faiss_result: dict | None, pg: dict) -> None:
    """Recall and throughput against ef_search, for every side."""
    sides = ([("faiss", faiss_result)] if faiss_result else []) + list(pg.items())
    print(f"\n{'side':9} {'ef_search':>9} {'R@10':>6} {'c1 q/s':>7} {'c8 q/s':>7} {'c8 p99 ms':>9} {'c8 q/s/GB':>9}")
    for name, r in sides:
        for ef, at in r["ef_search"].items():
            print(
                f"{name:9} {ef:9d} {at['c1']['recall_at_10']:6.3f} {at['c1']['qps']:7.1f} {at['c8']['qps']:7.1f} "
                f"{at['c8']['p99_ms']:9.2f} {at['c8']['qps'] / (r['index_bytes'] / 2**30):9.0f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--variants", default="vector,halfvec,binary", help="comma-separated: vector,halfvec,binary")
    parser.add_argument("--rerank", type=int, default=100, help="binary: candidates re-ranked by the exact distance")
    parser.add_argument("--shared-buffers", default="4GB", help="PostgreSQL shared_buffers for the run")
    parser.add_argument("--maintenance-work-mem", default="4GB", help="for the HNSW builds (graph in memory)")
    parser.add_argument("--no-faiss", action="store_true", help="skip the anchor (ratios are then not printed)")
    parser.add_argument("--m", type=int, default=HNSW_M, help="HNSW m (the migration's by default)")
    parser.add_argument("--ef-construction", type=int, default=HNSW_EF_CONSTRUCTION, help="HNSW ef_construction")
    parser.add_argument(
        "--ef-search", default=str(EF_SEARCH), help=f"comma-separated hnsw.ef_search values to sweep (app: {EF_SEARCH})"
    )
    args = parser.parse_args()
    efs = [int(v) for v in args.ef_search.split(",") if v]
    graph = Graph(args.m, args.ef_construction)
    names = [n for n in args.variants.split(",") if n]
    if unknown := set(names) - set(VARIANTS):
        parser.error(f"--variants: unknown {sorted(unknown)}; choose from {sorted(VARIANTS)}")
    vectors = np.empty((args.rows, DIM), dtype=np.float32)  # filled in place: no second copy of a million rows
    for n, chunk in enumerate(latents(0, args.rows)):
        vectors[n * CHUNK : n * CHUNK + len(chunk)] = chunk
    mixed = np.concatenate(list(latents(1, 2 * args.queries)))  # other centres: new points, mixed with rows below
    picks = vectors[np.random.default_rng(2).integers(0, args.rows, 2 * args.queries)]
    probes = (picks + 0.5 * mixed) / 1.5
    probes = (probes / np.linalg.norm(probes, axis=1, keepdims=True)).astype(np.float32)
    queries, warm = probes[: args.queries], probes[args.queries :]
    started = time.perf_counter()
    truth = exact_top(vectors, queries)
    print(f"exact answers of {args.queries} queries in {time.perf_counter() - started:.1f} s")
    faiss_result = None if args.no_faiss else faiss_side(vectors, queries, warm, truth, efs, graph)
    pg = {}
    with throwaway_database() as (handle, root):
        tune_server(root, args.shared_buffers, args.maintenance_work_mem)
        copied, _ = load(handle, vectors)
        print(f"loaded {args.rows:,} rows by COPY in {copied:.1f} s")
        for name in names:
            pg[name] = pg_variant(handle, root, name, queries, warm, truth, args.rerank, efs, graph)
            print(f"{name}: built in {pg[name]['build_s']:.1f} s, R@10 {pg[name]['c1']['recall_at_10']:.3f}")
    if faiss_result:
        print_table(args.rows, copied, faiss_result, pg, efs[0])
    print_sweep(faiss_result, pg)
    path = write_result(
        "scale",
        {
            "rows": args.rows,
            "queries": args.queries,
            "k": K,
            "dim": DIM,
            "concurrency": CONCURRENCY,
            "hnsw": {
                **asdict(graph),
                "ef_search": efs,
                "app_ef_search": EF_SEARCH,
            },
            "binary_rerank": args.rerank,
            "shared_buffers": args.shared_buffers,
            "maintenance_work_mem": args.maintenance_work_mem,
            "load_average": os.getloadavg(),
            "copy_s": copied,
            "faiss": faiss_result,
            "postgres": pg,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Search: raw SQL over psycopg against POST /v1/search through the app, on 100k latents bulk-loaded by COPY into
the real schema of a throw-away embedded PostgreSQL. Sequential and at concurrency 8, unfiltered and with a
1%-selective tag filter: queries/s, p50, p99 latency, and recall@10 against an exact (numpy) scan.

    .venv/bin/python benchmarks/search.py [--rows 100000] [--queries 200] [--rounds 3]

Each case runs raw and API rounds alternately (this host's speed drifts within seconds); the medians of the
rounds are reported, and the median of the rounds' API/raw ratios. Both sides run the same SQL: the app's own
statements, which are also the best plain SQL found for each case (unfiltered: iterative HNSW scan, ef_search
from limit; 1% filter: one statement ranking the filter's candidates exactly, see
service.domain.discovery.search.filtered_statement). Prints the table and the API/raw throughput ratio
(goals: >= 0.8 unfiltered, >= 150 q/s through the API at c1 with the filter, recall@10 >= 0.95); writes
benchmarks/results/search.json (with EXPLAIN ANALYZE plans) and docs/performance-search.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from pgvector.psycopg import register_vector_async  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from benchmarks._harness import throwaway_database, write_result  # noqa: E402
from service.db.engine import connect_sync, copy_rows  # noqa: E402
from service.db.schema.models import LATENT_HNSW_INDEX  # noqa: E402
from service.db.server import urls  # noqa: E402
from service.domain.access import api_keys  # noqa: E402
from service.domain.access.api_keys import Caller  # noqa: E402
from service.domain.discovery import search as domain  # noqa: E402
from service.settings import DatabaseSettings, Settings  # noqa: E402

DIM, K, CONCURRENCY = 512, 10, 8
RARE_EVERY = 100  # 1% of rows carry the tag "rare"
PLOT = Path(__file__).resolve().parents[1] / "docs" / "performance-search.png"


def clustered(rng: np.random.Generator, n: int, centres: int = 100) -> np.ndarray:
    means = rng.standard_normal((centres, DIM)).astype(np.float32)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    points = means[rng.integers(0, centres, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def load(handle, vectors: np.ndarray) -> tuple[int, list[uuid.UUID]]:
    """COPY generations and latents (HNSW index dropped during the load and rebuilt after, as in operations)."""
    ids = [uuid.uuid4() for _ in range(len(vectors))]
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        model_id = conn.execute(
            "INSERT INTO models (source_id, alias, source_type, version, is_default) "
            "VALUES ('bench', 'bench', 'local', 'v1', true) RETURNING id"
        ).fetchone()[0]
        indexdef = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (LATENT_HNSW_INDEX,)
        ).fetchone()[0]
        conn.execute(f"DROP INDEX {LATENT_HNSW_INDEX}")
        started = time.perf_counter()
        with conn.transaction():
            copy_rows(
                conn,
                "generations",
                ["id", "owner", "model_id", "kind", "status", "visibility", "tags", "params"],
                ["uuid", "text", "int4", "text", "text", "text", "text[]", "jsonb"],
                (
                    [
                        gid,
                        "bench",
                        model_id,
                        "text2music",
                        "succeeded",
                        "public",
                        ["rare" if n % RARE_EVERY == 0 else "common"],
                        Jsonb({}),
                    ]
                    for n, gid in enumerate(ids)
                ),
            )
            copy_rows(
                conn,
                "latent_embeddings",
                ["generation_id", "model_id", "embedding"],
                ["uuid", "int4", "vector"],
                ([gid, model_id, v] for gid, v in zip(ids, vectors, strict=True)),
            )
        copied = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute(indexdef)
        built = time.perf_counter() - started
        conn.execute("ANALYZE generations")
        conn.execute("ANALYZE latent_embeddings")
    print(
        f"loaded {len(vectors)} rows by COPY in {copied:.1f} s ({len(vectors) / copied:,.0f} rows/s); "
        f"HNSW build {built:.1f} s"
    )
    return model_id, ids


def exact_truth(vectors: np.ndarray, queries: np.ndarray, ids: list[uuid.UUID], rare: bool) -> list[set]:
    mask = np.zeros(len(vectors), dtype=bool)
    mask[::RARE_EVERY] = True
    pool = np.flatnonzero(mask) if rare else np.arange(len(vectors))
    sims = queries @ vectors[pool].T
    top = np.argsort(-sims, axis=1)[:, :K]
    return [{ids[pool[j]] for j in row} for row in top]


def compiled(statement) -> tuple[str, dict]:
    from sqlalchemy.dialects import postgresql

    done = statement.compile(dialect=postgresql.psycopg.dialect())
    return str(done), dict(done.params)


def app_statements(model_id: int, rare: bool) -> dict[str, tuple[str, dict]]:
    """The app's own statements as SQL text: the one-statement filtered search (its candidates ranked exactly when
    the filter leaves fewer than EXACT_BELOW_ROWS rows) and the HNSW query (unfiltered, or a filter that is not
    selective)."""
    model = domain.Model(id=model_id, alias="bench", latent_dim=DIM)
    filters = domain.SearchFilter(tags_all=["rare"]) if rare else domain.SearchFilter()
    target = domain.Target(model, domain.QUERY_VECTOR)  # one parameter, however often the statement uses it
    caller = Caller("bench", "reader", 0)
    return {
        "filtered": compiled(domain.filtered_statement(caller, target, filters, K)),
        "hnsw": compiled(domain.nearest_statement(caller, target, filters, K)),
    }


def with_vector(statement: tuple[str, dict], vector: np.ndarray) -> tuple[str, dict]:
    sql, params = statement
    return sql, {**params, domain.QUERY_VECTOR.key: vector}


async def raw_query(conn, statements: dict, rare: bool, vector: np.ndarray, prefix: str = "") -> list:
    """The best plain psycopg can do for one search, over one connection: the app's statements, each as one
    pipeline (the scan settings, the statement prepared with the vector in binary, COMMIT so the connection keeps
    its prepared statement). A filtered search is one statement when the filter is selective (rows carry the
    candidate count first); otherwise, as unfiltered, the HNSW query. ``prefix`` (EXPLAIN ...) goes on the search
    statement, unprepared."""
    if rare:
        rows = await _pipelined(conn, with_vector(statements["filtered"], vector), prefix)
        if prefix:  # the plan of the statement a selective filter runs
            return rows
        if rows[0][0] < domain.EXACT_BELOW_ROWS:
            return [row[1:] for row in rows if row[1] is not None]
    return await _pipelined(conn, with_vector(statements["hnsw"], vector), prefix)


async def _pipelined(conn, statement: tuple[str, dict], prefix: str) -> list:
    sql, params = statement
    async with conn.pipeline():
        await conn.execute(domain.PIPELINE_SETTINGS, domain.scan_settings(K))
        cursor = await conn.execute(prefix + sql, params, prepare=not prefix)
        await conn.commit()
    return await cursor.fetchall()


def summary(latencies: list[float], wall: float, found: list[set], truth: list[set]) -> dict:
    ordered = sorted(latencies)
    recall = statistics.mean(len(f & t) / K for f, t in zip(found, truth, strict=True))
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "qps": len(latencies) / wall,
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * p99,
        "recall_at_10": recall,
    }


async def run_raw(handle, model_id: int, queries: np.ndarray, rare: bool, concurrency: int) -> tuple:
    statements = app_statements(model_id, rare)
    conns = [await psycopg.AsyncConnection.connect(urls.libpq_url(handle.app_url)) for _ in range(concurrency)]
    for conn in conns:
        await register_vector_async(conn)
    latencies, found, queue = [0.0] * len(queries), [set()] * len(queries), list(range(len(queries)))

    async def worker(conn) -> None:
        while queue:
            i = queue.pop()
            started = time.perf_counter()
            rows = await raw_query(conn, statements, rare, queries[i])
            latencies[i] = time.perf_counter() - started
            found[i] = {row[0] for row in rows}

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    wall = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return latencies, wall, found


async def run_api(client, headers, queries: np.ndarray, rare: bool, concurrency: int) -> tuple:
    latencies, found, queue = [0.0] * len(queries), [set()] * len(queries), list(range(len(queries)))
    extra = {"filter": {"tags_all": ["rare"]}} if rare else {}

    async def worker() -> None:
        while queue:
            i = queue.pop()
            started = time.perf_counter()
            response = await client.post(
                "/v1/search", json={"vector": queries[i].tolist(), "limit": K, **extra}, headers=headers
            )
            latencies[i] = time.perf_counter() - started
            assert response.status_code == 200, response.text
            found[i] = {uuid.UUID(item["id"]) for item in response.json()["items"]}

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, found


@contextmanager
def api_server(handle, root: Path, worker: bool = False):
    """`soundalike serve` in its own process (no worker unless asked), as deployed: the client talks HTTP to it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SOUNDALIKE_")},
        "SOUNDALIKE_DATABASE_URL": handle.app_url,
        "SOUNDALIKE_DATABASE_MIGRATION_URL": handle.migration_url,
        "SOUNDALIKE_DATABASE_POOL_SIZE": str(CONCURRENCY + 2),
        "SOUNDALIKE_SERVER_PORT": str(port),
        "SOUNDALIKE_SERVER_RATE_LIMIT_PER_MINUTE": str(10**9),
        "SOUNDALIKE_JOBS_IN_PROCESS_WORKER": str(worker).lower(),
        "SOUNDALIKE_STORAGE_BLOB_DIR": str(root / "blobs"),
        "SOUNDALIKE_STORAGE_ARCHIVE_DIR": str(root / "archive"),
    }
    log = (root / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the API server did not start; see {root / 'server.log'}")
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        log.close()


async def reader_key(handle) -> str:
    from service.db.engine import create_engine, session_factory

    engine = create_engine(handle.app_url, DatabaseSettings())
    try:
        async with session_factory(engine)() as session:
            key = (await api_keys.create_key(session, Settings().auth.secret, "bench", "reader")).key
            await session.commit()
        return key
    finally:
        await engine.dispose()


async def measure(handle, url: str, model_id: int, queries: np.ndarray, truths: dict, rounds: int) -> tuple[dict, dict]:
    results, plans = {}, {}
    headers = {"Authorization": f"Bearer {await reader_key(handle)}"}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        for rare in (False, True):
            plans["filtered_1pct" if rare else "unfiltered"] = await explain(handle, model_id, queries[0], rare)
            for concurrency in (1, CONCURRENCY):
                case = f"{'filtered_1pct' if rare else 'unfiltered'}/c{concurrency}"
                await run_raw(handle, model_id, queries[:20], rare, concurrency)  # warm-up
                await run_api(client, headers, queries[:20], rare, concurrency)
                raws, apis = [], []
                for _ in range(rounds):  # alternating: this host's speed drifts within seconds
                    raws.append(summary(*await run_raw(handle, model_id, queries, rare, concurrency), truths[rare]))
                    apis.append(summary(*await run_api(client, headers, queries, rare, concurrency), truths[rare]))
                raw, api = medians(raws), medians(apis)
                ratio = statistics.median(a["qps"] / r["qps"] for r, a in zip(raws, apis, strict=True))
                results[case] = {"raw_sql": raw, "api": api, "ratio": ratio, "rounds": {"raw_sql": raws, "api": apis}}
                print_row(case, raw, api, ratio)
    return results, plans


async def explain(handle, model_id: int, query: np.ndarray, rare: bool) -> str:
    statements = app_statements(model_id, rare)
    async with await psycopg.AsyncConnection.connect(urls.libpq_url(handle.app_url)) as conn:
        await register_vector_async(conn)
        rows = await raw_query(conn, statements, rare, query, "EXPLAIN (ANALYZE, BUFFERS) ")
    return re.sub(r"'\[[^\]]*\]'::vector", "'<query>'::vector", "\n".join(r[0] for r in rows))


def medians(summaries: list[dict]) -> dict:
    return {key: statistics.median(s[key] for s in summaries) for key in summaries[0]}


def print_row(case: str, raw: dict, api: dict, ratio: float) -> None:
    print(
        f"{case:18} raw {raw['qps']:7.1f} q/s p50 {raw['p50_ms']:6.1f} ms p99 {raw['p99_ms']:6.1f} ms "
        f"R@10 {raw['recall_at_10']:.3f} | API {api['qps']:7.1f} q/s p50 {api['p50_ms']:6.1f} ms "
        f"p99 {api['p99_ms']:6.1f} ms R@10 {api['recall_at_10']:.3f} | "
        f"ratio {ratio:.2f}"
    )


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(results)
    x = np.arange(len(cases))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = [("qps", "queries / s", "Throughput, 100k latents"), ("p99_ms", "ms", "p99 latency")]
    for ax, (metric, unit, title) in zip(axes, panels, strict=True):
        ax.bar(x - 0.2, [results[c]["raw_sql"][metric] for c in cases], 0.4, label="raw SQL (psycopg)")
        ax.bar(x + 0.2, [results[c]["api"][metric] for c in cases], 0.4, label="POST /v1/search (HTTP)")
        ax.set_xticks(x, cases, rotation=15)
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw/API rounds per case; medians count")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = clustered(rng, args.rows)
    queries = clustered(np.random.default_rng(1), args.queries)  # new points from the same distribution
    queries = (vectors[rng.integers(0, args.rows, args.queries)] + 0.5 * queries) / 1.5
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    with throwaway_database() as (handle, root):
        model_id, ids = load(handle, vectors)
        truths = {rare: exact_truth(vectors, queries, ids, rare) for rare in (False, True)}
        with api_server(handle, root) as url:
            results, plans = asyncio.run(measure(handle, url, model_id, queries, truths, args.rounds))
    plot(results)
    path = write_result(
        "search",
        {
            "rows": args.rows,
            "queries": args.queries,
            "rounds": args.rounds,
            "k": K,
            "concurrency": CONCURRENCY,
            "ef_search": min(max(domain.MIN_EF_SEARCH, 2 * K), domain.MAX_EF_SEARCH),
            "exact_below_rows": domain.EXACT_BELOW_ROWS,
            "results": results,
            "plans": plans,
        },
    )
    print(f"wrote {path} and {PLOT}")


if __name__ == "__main__":
    main()

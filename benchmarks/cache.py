"""The read cache: each cached read with the cache on and off in the same run, through the app (in-process ASGI
client, no HTTP), on --rows public latents bulk-loaded by COPY into a throw-away embedded PostgreSQL.

    .venv/bin/python benchmarks/cache.py [--rows 100000] [--requests 400] [--popular 20] [--rounds 2]

Reads: GET /v1/tags (the vocabulary body built once per process, or afresh), GET /v1/presets/{id} of one popular
public preset, GET /v1/generations/{id}/neighbours?limit=10 cycling over --popular items (a hit is checked against
the rows by one primary-key query). Backends: in-process, and the shared Redis backend when `redis-server` is on
the PATH (one started in the temp directory). Sequential requests; on and off alternate for --rounds rounds and the
best round of each counts. Prints requests/s, p50 and p99 and the on/off throughput ratio per read and backend;
writes benchmarks/results/cache.json.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from litestar.testing import AsyncTestClient  # noqa: E402

from benchmarks._harness import throwaway_database, write_result  # noqa: E402
from benchmarks.search import clustered, load  # noqa: E402
from service.app import create_app  # noqa: E402
from service.db.engine import connect_sync  # noqa: E402
from service.domain.access import api_keys  # noqa: E402
from service.domain.cache.store import ReadCache  # noqa: E402
from service.domain.catalogue import tags  # noqa: E402
from service.settings import CacheSettings, DatabaseSettings, ServerSettings, Settings, StorageSettings  # noqa: E402

BUILT_ONCE = tags.vocabulary_body


@contextmanager
def redis_server(root: Path):
    """A throw-away redis-server on a free port (no persistence), or None when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(root), "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=30)


def add_preset(handle) -> uuid.UUID:
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        return conn.execute(
            "INSERT INTO presets (owner, name, prompt, steps, visibility) "
            "VALUES ('bench', 'popular', 'piano, minor, slow', 8, 'public') RETURNING id"
        ).fetchone()[0]


def settings_for(handle, root: Path, cache_url: str | None) -> Settings:
    return Settings(
        env="test",
        database=DatabaseSettings(url=handle.app_url, migration_url=handle.migration_url),
        storage=StorageSettings(blob_dir=root / "blobs", archive_dir=root / "archive"),
        server=ServerSettings(rate_limit_per_minute=10**9),
        cache=CacheSettings(url=cache_url, prefix=f"bench-{uuid.uuid4().hex}:"),
    )


def switch(client, cache: ReadCache, on: bool) -> None:
    client.app.state.read_cache = cache if on else ReadCache.off()
    tags.vocabulary_body = BUILT_ONCE if on else BUILT_ONCE.__wrapped__


async def timed(client, headers, urls: list[str]) -> dict:
    latencies = []
    started = time.perf_counter()
    for url in urls:
        begun = time.perf_counter()
        response = await client.get(url, headers=headers)
        latencies.append(time.perf_counter() - begun)
        assert response.status_code == 200, response.text
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "rps": len(urls) / wall,
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


async def measure(handle, root: Path, cache_url: str | None, reads: dict[str, list[str]], rounds: int) -> dict:
    async with AsyncTestClient(
        create_app(handle.app_url, settings_for(handle, root, cache_url)), timeout=120
    ) as client:
        async with client.app.state.sessionmaker() as session:
            key = (await api_keys.create_key(session, client.app.state.settings.auth.secret, "reader", "reader")).key
            await session.commit()
        headers, cache = {"Authorization": f"Bearer {key}"}, client.app.state.read_cache
        results = {}
        for read, urls in reads.items():
            best: dict[bool, dict] = {}
            for on in [True, False] * rounds:
                switch(client, cache, on)
                await timed(client, headers, urls[: max(1, len(urls) // 10)])  # warm-up (fills the cache when on)
                run = await timed(client, headers, urls)
                if on not in best or run["rps"] > best[on]["rps"]:
                    best[on] = run
            switch(client, cache, True)
            results[read] = {"on": best[True], "off": best[False], "ratio": best[True]["rps"] / best[False]["rps"]}
            print_row(read, "redis" if cache_url else "in-process", results[read])
        return results


def print_row(read: str, backend: str, result: dict) -> None:
    on, off = result["on"], result["off"]
    print(
        f"{read:11} {backend:10} on {on['rps']:7.1f} req/s p50 {on['p50_ms']:6.2f} ms p99 {on['p99_ms']:6.2f} ms | "
        f"off {off['rps']:7.1f} req/s p50 {off['p50_ms']:6.2f} ms p99 {off['p99_ms']:6.2f} ms | "
        f"ratio {result['ratio']:.2f}"
    )


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the test client logs every request
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--popular", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    vectors = clustered(np.random.default_rng(0), args.rows)
    with throwaway_database() as (handle, root):
        _, ids = load(handle, vectors)
        preset = add_preset(handle)
        popular = [ids[i] for i in np.random.default_rng(1).choice(len(ids), args.popular, replace=False)]
        reads = {
            "tags": ["/v1/tags"] * args.requests,
            "preset": [f"/v1/presets/{preset}"] * args.requests,
            "neighbours": [f"/v1/generations/{popular[i % len(popular)]}/neighbours" for i in range(args.requests)],
        }
        results = {}
        with redis_server(root) as redis_url:
            for backend, url in (("in-process", None), ("redis", redis_url)):
                if backend == "redis" and url is None:
                    print("redis-server is not installed: the Redis backend is not measured")
                    continue
                results[backend] = asyncio.run(measure(handle, root, url, reads, args.rounds))
    path = write_result(
        "cache",
        {"rows": args.rows, "requests": args.requests, "popular": args.popular, "rounds": args.rounds, **results},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

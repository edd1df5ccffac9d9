"""Re-encode throughput through the service (POST /v1/models/{ref}/reencode as an admin, the batch's chunk jobs run
by the API's in-process procrastinate worker, progress read from GET /v1/batches/{id} until it has succeeded)
against the raw loop (decode the same stored files, one batched encode and one binary COPY of the latents per
chunk, one transaction each), in the same run on the same items.

    .venv/bin/python benchmarks/reencode.py [--items 512] [--chunk-size 64] [--rounds 2]

The catalogue is a folder of one-window clips imported with `soundalike import`'s code path. Both sides encode
with the same checkpoint, each into a space of its own (two more registry rows for it), in alternating rounds
that each start from an empty space; the best round of each side counts. The worker's model is loaded before
the timing, as the baseline's is. Prints items/s for both and the ratio (goal >= 0.8); writes
benchmarks/results/reencode.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from litestar.testing import AsyncTestClient  # noqa: E402

from benchmarks._harness import benchmark_checkpoint, register_model, throwaway_database, write_result  # noqa: E402
from benchmarks.imports import make_files  # noqa: E402
from service.app import create_app  # noqa: E402
from service.db.engine import connect_sync, copy_rows  # noqa: E402
from service.domain.access import api_keys  # noqa: E402
from service.domain.catalogue.bulk_import import audio_files, import_folder  # noqa: E402
from service.domain.catalogue.imports import ImportOptions  # noqa: E402
from service.ml.pipeline import Pipeline  # noqa: E402
from service.settings import DatabaseSettings, JobsSettings, ServerSettings, Settings, StorageSettings  # noqa: E402
from service.storage import BlobStore  # noqa: E402

SOURCE, RAW, TARGET = "bench", "bench-raw", "bench-new"
ITEMS = "SELECT g.id, a.uri FROM generations g JOIN audio_assets a ON a.generation_id = g.id ORDER BY g.id"
POLL_SECONDS = 0.1  # a GET per poll shares the event loop with the in-process worker


def owner(handle) -> psycopg.Connection:
    return psycopg.connect(handle.migration_url.replace("+psycopg", ""), autocommit=True)


def add_space(handle, alias: str) -> int:
    """Another registry row for the benchmark's checkpoint: a space of its own to encode into (same speed)."""
    with owner(handle) as conn:
        return conn.execute(
            "INSERT INTO models (source_id, alias, source_type, version, checkpoint_path, checkpoint_sha256, "
            "latent_dim, sample_rate, clip_seconds) SELECT %s, %s, source_type, version, checkpoint_path, "
            "checkpoint_sha256, latent_dim, sample_rate, clip_seconds FROM models WHERE alias = %s RETURNING id",
            (alias, alias, SOURCE),
        ).fetchone()[0]


def empty(handle, *model_ids: int) -> None:
    """Every round starts with no latent in the spaces it fills."""
    with owner(handle) as conn:
        conn.execute("DELETE FROM latent_embeddings WHERE model_id = ANY(%s)", (list(model_ids),))


def baseline(url: str, store: BlobStore, pipeline, model_id: int, chunk_size: int) -> float:
    """Decode the stored audio, one batched encode and one binary COPY per chunk, one transaction each."""
    with connect_sync(url, autocommit=True) as conn:
        started = time.perf_counter()
        items = conn.execute(ITEMS).fetchall()
        for start in range(0, len(items), chunk_size):
            chunk = items[start : start + chunk_size]
            decoded = [sf.read(store.path(uri), dtype="float32", always_2d=True) for _, uri in chunk]
            latents = pipeline.encode_batch([audio.mean(axis=1) for audio, _ in decoded], decoded[0][1])
            with conn.transaction():
                copy_rows(
                    conn,
                    "latent_embeddings",
                    ["generation_id", "model_id", "embedding"],
                    ["uuid", "int4", "vector"],
                    [(gid, model_id, latent) for (gid, _), latent in zip(chunk, latents, strict=True)],
                )
        return len(items) / (time.perf_counter() - started)


async def through_api(client, headers: dict[str, str], items: int) -> float:
    """One re-encode batch from the POST to the GET that finds it succeeded."""
    started = time.perf_counter()
    response = await client.post(f"/v1/models/{TARGET}/reencode", json={"from": SOURCE}, headers=headers)
    assert response.status_code == 202, response.text
    batch = response.json()
    while batch["status"] in ("pending", "running"):
        await asyncio.sleep(POLL_SECONDS)
        batch = (await client.get(f"/v1/batches/{batch['id']}", headers=headers)).json()
    elapsed = time.perf_counter() - started
    assert (batch["status"], batch["done"]) == ("succeeded", items), batch
    return items / elapsed


async def compare(handle, root: Path, store: BlobStore, pipeline, spaces: dict[str, int], args) -> tuple[float, float]:
    settings = Settings(
        env="test",
        database=DatabaseSettings(url=handle.app_url, migration_url=handle.migration_url),
        storage=StorageSettings(blob_dir=root / "blobs", archive_dir=root / "archive"),
        server=ServerSettings(rate_limit_per_minute=1_000_000),  # the progress polls are not what is measured
        # The FAISS sync is no part of a re-encode: it stays out of the rounds (its cron would fire in one).
        jobs=JobsSettings(reencode_chunk_size=args.chunk_size, index_sync_cron="0 0 1 1 *"),
    )
    app = create_app(handle.app_url, settings, run_worker_in_process=True)
    async with AsyncTestClient(app, timeout=600) as client:
        async with client.app.state.sessionmaker() as session:
            key = (await api_keys.create_key(session, settings.auth.secret, "bench", "admin")).key
            await session.commit()
        headers = {"Authorization": f"Bearer {key}"}
        await client.app.state.models.get(spaces[TARGET])  # the worker's model cache, loaded outside the timing
        raw = mine = 0.0
        # Alternate the two sides so a burst of load from elsewhere on a shared machine hits both alike.
        for _ in range(args.rounds):
            empty(handle, spaces[RAW], spaces[TARGET])
            rate = await asyncio.to_thread(baseline, handle.app_url, store, pipeline, spaces[RAW], args.chunk_size)
            raw = max(raw, rate)
            mine = max(mine, await through_api(client, headers, args.items))
    return raw, mine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=512, help="clips in the catalogue")
    parser.add_argument("--chunk-size", type=int, default=64, help="items per job (and per raw transaction)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each side counts")
    args = parser.parse_args()
    checkpoint = benchmark_checkpoint()
    pipeline = Pipeline.load(checkpoint)
    config = pipeline.config
    with throwaway_database() as (handle, root):
        source = register_model(handle, pipeline, checkpoint)
        spaces = {RAW: add_space(handle, RAW), TARGET: add_space(handle, TARGET)}
        make_files(root / "audio", args.items, config.sample_rate, config.clip_seconds)
        store = BlobStore(root / "blobs", root / "archive")
        with connect_sync(handle.app_url) as conn:
            files = audio_files(root / "audio")
            report = import_folder(conn, store, pipeline, source, "bench", files, ImportOptions(), StorageSettings())
            assert report.imported == args.items, report.skipped
        pipeline.encode_batch([np.zeros(config.sample_rate, np.float32) + 0.1], config.sample_rate)  # warm-up
        raw, mine = asyncio.run(compare(handle, root, store, pipeline, spaces, args))
    ratio = mine / raw
    print(f"model {pipeline.version} ({checkpoint.name}), {args.items} clips of {config.clip_seconds:g} s")
    print(f"chunks of {args.chunk_size}, best of {args.rounds} alternating rounds")
    print(f"  raw decode + encode + COPY   : {raw:7.1f} items/s")
    print(f"  API re-encode + worker       : {mine:7.1f} items/s")
    print(f"  ratio                        : {ratio:7.2f}  (goal >= 0.8)")
    write_result(
        "reencode",
        {
            "model": pipeline.version,
            "items": args.items,
            "chunk_size": args.chunk_size,
            "rounds": args.rounds,
            "raw_items_per_s": raw,
            "reencode_items_per_s": mine,
            "ratio": ratio,
        },
    )


if __name__ == "__main__":
    main()

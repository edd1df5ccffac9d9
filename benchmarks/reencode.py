"""Re-encode throughput (`soundalike models reencode`'s code path: the batch's listing, then each chunk job's body:
lock the items, decode their stored audio, batched encode, binary COPY, items marked done) against the raw loop
(decode the same stored files, batched encode, binary COPY of the latents), in the same run on the same items.

    .venv/bin/python benchmarks/reencode.py [--items 256] [--chunk-size 64]

Both encode with the same loaded model into two spaces registered for the run. Prints items/s for both and the
ratio (goal >= 0.8); writes benchmarks/results/reencode.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import benchmark_checkpoint, register_model, throwaway_database, write_result  # noqa: E402
from benchmarks.imports import make_files  # noqa: E402
from service.db.engine import connect_sync, copy_rows, create_engine, session_factory  # noqa: E402
from service.domain import reencode  # noqa: E402
from service.domain.api_keys import Caller  # noqa: E402
from service.domain.bulk_import import audio_files, import_folder  # noqa: E402
from service.domain.imports import ImportOptions  # noqa: E402
from service.domain.model_cache import ModelCache  # noqa: E402
from service.jobs.app import create_job_app, opened  # noqa: E402
from service.jobs.queue import ProcrastinateQueue  # noqa: E402
from service.ml.pipeline import Pipeline  # noqa: E402
from service.settings import DatabaseSettings, JobsSettings, StorageSettings  # noqa: E402
from service.storage import BlobStore  # noqa: E402

ADMIN = Caller(owner="bench", role="admin", key_id=0)
ITEMS = "SELECT g.id, a.uri FROM generations g JOIN audio_assets a ON a.generation_id = g.id ORDER BY g.id"


def add_space(handle, pipeline, checkpoint: Path, alias: str) -> int:
    """Another registry row for the same checkpoint: a second space to encode into (same speed, by design)."""
    with psycopg.connect(handle.migration_url.replace("+psycopg", ""), autocommit=True) as conn:
        return conn.execute(
            "INSERT INTO models (source_id, alias, source_type, version, checkpoint_path, checkpoint_sha256, "
            "latent_dim, sample_rate, clip_seconds) SELECT %s, %s, source_type, version, checkpoint_path, "
            "checkpoint_sha256, latent_dim, sample_rate, clip_seconds FROM models WHERE alias = 'bench' RETURNING id",
            (f"bench-{alias}", alias),
        ).fetchone()[0]


def baseline(conn, store: BlobStore, pipeline, model_id: int, chunk_size: int) -> float:
    """Decode the stored audio, one batched encode and one binary COPY per chunk, one transaction each."""
    started = time.perf_counter()
    items = conn.execute(ITEMS).fetchall()
    for start in range(0, len(items), chunk_size):
        chunk = items[start : start + chunk_size]
        clips, _ = reencode.read_clips(store, chunk)
        latents = pipeline.encode_batch([audio for _, audio, _ in clips], clips[0][2])
        with conn.transaction():
            copy_rows(
                conn,
                "latent_embeddings",
                *reencode.LATENT_COLUMNS,
                [(gid, model_id, latent) for (gid, _, _), latent in zip(clips, latents, strict=True)],
            )
    return len(items) / (time.perf_counter() - started)


async def project(url: str, store: BlobStore, pipeline, target: str, chunk_size: int) -> float:
    """A re-encode batch from the listing to its last chunk, each chunk through the job's own body."""
    engine = create_engine(url, DatabaseSettings())
    sessions = session_factory(engine)
    models = ModelCache(sessions, size=2, loader=lambda path: pipeline)
    job_app = create_job_app(url, JobsSettings())
    try:
        started = time.perf_counter()
        async with opened(job_app, url, DatabaseSettings()), sessions() as session:
            request = reencode.ReencodeRequest("bench", target)
            batch = await reencode.request_reencode(session, ProcrastinateQueue(job_app), ADMIN, request, chunk_size)
        for chunk in range(batch.params["chunks"]):
            await reencode.run_chunk_job(sessions, url, store, models, batch.id, chunk)
        return batch.total / (time.perf_counter() - started)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=64)
    args = parser.parse_args()
    checkpoint = benchmark_checkpoint()
    pipeline = Pipeline.load(checkpoint)
    with throwaway_database() as (handle, root):
        source = register_model(handle, pipeline, checkpoint)
        make_files(root / "audio", args.items, pipeline.config.sample_rate, pipeline.config.clip_seconds)
        store = BlobStore(root / "blobs", root / "archive")
        with connect_sync(handle.app_url) as conn:
            import_folder(
                conn,
                store,
                pipeline,
                source,
                "bench",
                audio_files(root / "audio"),
                ImportOptions(),
                StorageSettings(),
                args.chunk_size,
            )
            pipeline.encode_batch([np.zeros(16000, np.float32) + 0.1], 16000)  # warm-up
            raws, ours = [], []
            for attempt in range(2):
                raws.append(
                    baseline(
                        conn, store, pipeline, add_space(handle, pipeline, checkpoint, f"raw{attempt}"), args.chunk_size
                    )
                )
                add_space(handle, pipeline, checkpoint, f"new{attempt}")
                ours.append(asyncio.run(project(handle.app_url, store, pipeline, f"new{attempt}", args.chunk_size)))
    raw, mine = max(raws), max(ours)
    ratio = mine / raw
    print(f"{args.items} items of {pipeline.config.clip_seconds:g} s, chunks of {args.chunk_size}, best of 2 each")
    print(f"  raw decode + encode + COPY : {raw:7.1f} items/s")
    print(f"  soundalike re-encode       : {mine:7.1f} items/s")
    print(f"  ratio                      : {ratio:7.2f}")
    write_result(
        "reencode",
        {
            "items": args.items,
            "chunk_size": args.chunk_size,
            "raw_items_per_s": raw,
            "reencode_items_per_s": mine,
            "ratio": ratio,
        },
    )


if __name__ == "__main__":
    main()

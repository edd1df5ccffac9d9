"""Folder import throughput (`soundalike import`'s code path: decode, batched encode, WAV blobs, COPY of
generations + audio assets + latents) against the raw baseline (decode, batched encode, COPY of the rows
the latents need and of the latents).

    .venv/bin/python benchmarks/imports.py [--files 128] [--batch-size 32]

Prints files/s for both and the ratio; writes benchmarks/results/imports.json.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import benchmark_checkpoint, register_model, throwaway_database, write_result  # noqa: E402
from service.db.engine import connect_sync, copy_rows  # noqa: E402
from service.domain.catalogue.bulk_import import audio_files, import_folder  # noqa: E402
from service.domain.catalogue.imports import ImportOptions, decode_upload  # noqa: E402
from service.ml.pipeline import Pipeline  # noqa: E402
from service.settings import StorageSettings  # noqa: E402
from service.storage import BlobStore  # noqa: E402


def make_files(folder: Path, count: int, rate: int, seconds: float) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(rate * seconds)) / rate
    for i in range(count):
        pitch = 110 * 2 ** (rng.integers(0, 36) / 12)
        audio = 0.3 * np.sin(2 * np.pi * pitch * t) * np.exp(-3 * (t % rng.uniform(0.2, 0.8)))
        sf.write(folder / f"clip{i:04d}.wav", (audio + 0.01 * rng.normal(size=t.size)).astype(np.float32), rate)


def baseline(conn, pipeline, model_id: int, files: list[Path], batch_size: int, limits) -> float:
    started = time.perf_counter()
    for start in range(0, len(files), batch_size):
        batch = files[start : start + batch_size]
        clips = [
            decode_upload(p.read_bytes(), p.name, limits.max_upload_bytes, limits.max_upload_seconds) for p in batch
        ]
        latents = pipeline.encode_batch([c.audio for c in clips], clips[0].sample_rate)
        ids = [uuid.uuid4() for _ in batch]
        with conn.transaction():
            copy_rows(
                conn,
                "generations",
                ["id", "owner", "model_id", "kind", "status"],
                ["uuid", "text", "int4", "text", "text"],
                [(i, "bench", model_id, "import", "succeeded") for i in ids],
            )
            copy_rows(
                conn,
                "latent_embeddings",
                ["generation_id", "model_id", "embedding"],
                ["uuid", "int4", "vector"],
                list(zip(ids, [model_id] * len(ids), latents, strict=True)),
            )
    return len(files) / (time.perf_counter() - started)


def project(conn, store, pipeline, model_id: int, files: list[Path], batch_size: int, limits) -> float:
    started = time.perf_counter()
    report = import_folder(conn, store, pipeline, model_id, "bench", files, ImportOptions(), limits, batch_size)
    assert report.imported == len(files), report.skipped
    return len(files) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    checkpoint = benchmark_checkpoint()
    pipeline = Pipeline.load(checkpoint)
    limits = StorageSettings()
    with throwaway_database() as (handle, root):
        model_id = register_model(handle, pipeline, checkpoint)
        make_files(root / "audio", args.files, pipeline.config.sample_rate, pipeline.config.clip_seconds)
        files = audio_files(root / "audio")
        store = BlobStore(root / "blobs", root / "archive")
        with connect_sync(handle.app_url) as conn:
            pipeline.encode_batch([np.zeros(16000, np.float32) + 0.1], 16000)  # warm-up
            raw = max(baseline(conn, pipeline, model_id, files, args.batch_size, limits) for _ in range(2))
            ours = max(project(conn, store, pipeline, model_id, files, args.batch_size, limits) for _ in range(2))
    ratio = ours / raw
    print(f"{args.files} files of {pipeline.config.clip_seconds:g} s, batch {args.batch_size}, best of 2 each")
    print(f"  raw decode + encode + COPY : {raw:7.1f} files/s")
    print(f"  soundalike import          : {ours:7.1f} files/s")
    print(f"  ratio                      : {ratio:7.2f}")
    write_result(
        "imports",
        {
            "files": args.files,
            "batch_size": args.batch_size,
            "raw_files_per_s": raw,
            "import_files_per_s": ours,
            "ratio": ratio,
        },
    )


if __name__ == "__main__":
    main()

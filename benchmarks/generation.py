"""Generation throughput through the API (POST 202 → worker → succeeded, end to end) against calling the
pipeline directly in one process (generate + decode + WAV encode), at batch 8. Two API sides: the worker
beside the API in its process (`serve`'s default; models on the inference thread), and a `soundalike worker`
process (models on its main thread).

    .venv/bin/python benchmarks/generation.py [--requests 12] [--steps N] [--rounds 2]

Prints clips/s for each and the ratios (target ≥ 0.9); writes benchmarks/results/generation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from litestar.testing import AsyncTestClient  # noqa: E402

from benchmarks._harness import (  # noqa: E402
    benchmark_checkpoint,
    register_model,
    running,
    service_env,
    throwaway_database,
    write_result,
)
from service.app import create_app  # noqa: E402
from service.domain.access import api_keys  # noqa: E402
from service.domain.catalogue.audio import to_wav  # noqa: E402
from service.ml.pipeline import Pipeline  # noqa: E402
from service.settings import DatabaseSettings, ServerSettings, Settings, StorageSettings  # noqa: E402

BATCH = 8
BUSY = ("pending", "running")
PROMPTS = ["piano, minor, slow", "guitar, major, 120 bpm", "strings, minor", "organ, drums", "flute, major"]


def direct(pipeline: Pipeline, requests: int, steps: int) -> float:
    started = time.perf_counter()
    for r in range(requests):
        prompt = PROMPTS[r % len(PROMPTS)]
        latents = pipeline.generate([prompt] * BATCH, list(range(r * BATCH, (r + 1) * BATCH)), steps=steps)
        for clip in pipeline.decode(latents):
            to_wav(clip, pipeline.config.sample_rate)
    return requests * BATCH / (time.perf_counter() - started)


async def through_api(handle, root: Path, requests: int, steps: int, in_process: bool) -> float:
    if in_process:
        return await _api_rate(handle, root, requests, steps, in_process=True)
    with running("worker", ["worker"], service_env(handle, root), root):
        return await _api_rate(handle, root, requests, steps, in_process=False)


async def _api_rate(handle, root: Path, requests: int, steps: int, in_process: bool) -> float:
    settings = Settings(
        env="test",
        database=DatabaseSettings(url=handle.app_url, migration_url=handle.migration_url),
        storage=StorageSettings(blob_dir=root / "blobs", archive_dir=root / "archive"),
        server=ServerSettings(rate_limit_per_minute=1_000_000),  # measuring throughput, not the rate limiter
    )
    app = create_app(handle.app_url, settings, run_worker_in_process=in_process)
    async with AsyncTestClient(app, timeout=600) as client:
        async with client.app.state.sessionmaker() as session:
            key = (await api_keys.create_key(session, settings.auth.secret, "bench", "creator")).key
            await session.commit()
        headers = {"Authorization": f"Bearer {key}"}
        # loads the model and runs one batch of the measured size outside the timing, as the direct side's warm-up
        warm = {"prompt": PROMPTS[0], "steps": steps, "batch_size": BATCH}
        await client.post("/v1/generations?wait=60", json=warm, headers=headers)
        started = time.perf_counter()
        ids = []
        for r in range(requests):
            body = {"prompt": PROMPTS[r % len(PROMPTS)], "seed": r * BATCH, "steps": steps, "batch_size": BATCH}
            ids += (await client.post("/v1/generations", json=body, headers=headers)).json()["ids"]
        # Jobs run in order: watching the last one (5 polls a second) keeps the client's own CPU use negligible.
        while (await client.get(f"/v1/generations/{ids[-1]}", headers=headers)).json()["status"] in BUSY:
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        for generation_id in ids:
            status = (await client.get(f"/v1/generations/{generation_id}", headers=headers)).json()["status"]
            assert status == "succeeded", status
        return len(ids) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps [the model's default]")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each side counts")
    args = parser.parse_args()
    checkpoint = benchmark_checkpoint()
    pipeline = Pipeline.load(checkpoint)
    steps = args.steps or pipeline.config.default_steps
    with throwaway_database() as (handle, root):
        register_model(handle, pipeline, checkpoint)
        direct(pipeline, 1, steps)  # warm-up
        # Alternate the sides so a burst of load from elsewhere on a shared machine hits them alike.
        direct_rate = api_rate = process_rate = 0.0
        for _ in range(args.rounds):
            direct_rate = max(direct_rate, direct(pipeline, args.requests, steps))
            api_rate = max(api_rate, asyncio.run(through_api(handle, root, args.requests, steps, in_process=True)))
            process_rate = max(
                process_rate, asyncio.run(through_api(handle, root, args.requests, steps, in_process=False))
            )
    ratio, process_ratio = api_rate / direct_rate, process_rate / direct_rate
    print(
        f"model {pipeline.version} ({checkpoint.name}), batch {BATCH}, steps {steps}, {args.requests} requests,"
        f" best of {args.rounds} alternating rounds"
    )
    print(f"  direct pipeline         : {direct_rate:7.2f} clips/s")
    print(f"  API + in-process worker : {api_rate:7.2f} clips/s   ratio {ratio:5.2f}")
    print(f"  API + worker process    : {process_rate:7.2f} clips/s   ratio {process_ratio:5.2f}  (target >= 0.9)")
    write_result(
        "generation",
        {
            "model": pipeline.version,
            "batch": BATCH,
            "steps": steps,
            "requests": args.requests,
            "rounds": args.rounds,
            "direct_clips_per_s": direct_rate,
            "api_clips_per_s": api_rate,
            "ratio": ratio,
            "worker_process_clips_per_s": process_rate,
            "worker_process_ratio": process_ratio,
        },
    )


if __name__ == "__main__":
    main()

"""Generation throughput through the API (POST 202 → worker → succeeded, end to end) against calling the
pipeline directly in one process (generate + decode + WAV encode), at batch 8. Two API sides: the worker
beside the API in its process (`serve`'s default; models on the inference thread), and a `soundalike worker`
process (models on its main thread).

    .venv/bin/python benchmarks/generation.py [--requests 12] [--steps N] [--rounds 5]

An API side's time runs from its first POST until the last clip's ``finished_at`` (stamped in the transaction
that makes it available, ~15 ms before its commit), not until the client's next poll. Prints clips/s for each
and the ratios (target ≥ 0.9); writes benchmarks/results/generation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
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
SEEDS = itertools.count(0, BATCH)
PROMPTS = ["piano, minor, slow", "guitar, major, 120 bpm", "strings, minor", "organ, drums", "flute, major"]


def direct(pipeline: Pipeline, requests: int, steps: int) -> float:
    started = time.perf_counter()
    for r in range(requests):
        prompt = PROMPTS[r % len(PROMPTS)]
        latents = pipeline.generate([prompt] * BATCH, list(range(r * BATCH, (r + 1) * BATCH)), steps=steps)
        for clip in pipeline.decode(latents):
            to_wav(clip, pipeline.config.sample_rate)
    return requests * BATCH / (time.perf_counter() - started)


async def api_side(
    handle, root: Path, pipeline: Pipeline, requests: int, steps: int, rounds: int, in_process: bool
) -> list[tuple[float, float]]:
    """(direct clips/s, API clips/s) per round, the direct run made just before the API's. A worker process and
    its API server serve every round, idle during the direct run. The in-process side starts its server after
    each direct run: while its inference thread lives, torch runs ~1.8x slower on this process's main thread."""
    if in_process:
        runs = []
        for _ in range(rounds):
            before = direct(pipeline, requests, steps)
            async with api_client(handle, root, steps, in_process=True) as (client, headers):
                runs.append((before, await _api_rate(client, headers, requests, steps)))
        return runs
    with running("worker", ["worker"], service_env(handle, root), root):
        async with api_client(handle, root, steps, in_process=False) as (client, headers):
            return [
                (direct(pipeline, requests, steps), await _api_rate(client, headers, requests, steps))
                for _ in range(rounds)
            ]


@asynccontextmanager
async def api_client(handle, root: Path, steps: int, in_process: bool):
    """A test client of the API and a creator's headers, once one batch of the measured size has run (loading
    the model: the direct side's warm-up)."""
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
        warm = {"prompt": PROMPTS[0], "steps": steps, "batch_size": BATCH}
        await client.post("/v1/generations?wait=60", json=warm, headers=headers)
        yield client, headers


async def _api_rate(client: AsyncTestClient, headers: dict[str, str], requests: int, steps: int) -> float:
    started = datetime.now(UTC)
    ids = []
    for r in range(requests):
        seed = next(SEEDS)  # new clips every round: a clip made before would not be written again
        body = {"prompt": PROMPTS[r % len(PROMPTS)], "seed": seed, "steps": steps, "batch_size": BATCH}
        ids += (await client.post("/v1/generations", json=body, headers=headers)).json()["ids"]
    # Jobs run in order: watching the last one (a poll a second) keeps the client's own CPU use negligible.
    while (await client.get(f"/v1/generations/{ids[-1]}", headers=headers)).json()["status"] in BUSY:
        await asyncio.sleep(1.0)
    finished = []
    for generation_id in ids:
        view = (await client.get(f"/v1/generations/{generation_id}", headers=headers)).json()
        assert view["status"] == "succeeded", view["status"]
        finished.append(datetime.fromisoformat(view["finished_at"]))
    # until the last clip was committed, as the worker's clock (this machine's) says: not the polling's delay
    return len(ids) / (max(finished) - started).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps [the model's default]")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per API side; the median ratio counts")
    args = parser.parse_args()
    checkpoint = benchmark_checkpoint()
    pipeline = Pipeline.load(checkpoint)
    steps = args.steps or pipeline.config.default_steps
    with throwaway_database() as (handle, root):
        register_model(handle, pipeline, checkpoint)
        direct(pipeline, 1, steps)  # warm-up
        sides = {
            name: asyncio.run(api_side(handle, root, pipeline, args.requests, steps, args.rounds, in_process))
            for name, in_process in (("in_process", True), ("worker_process", False))
        }
    # This machine's speed drifts by up to ~40 % within minutes (a shared host): each API run is compared with a
    # direct run made just before it, and the median of those ratios counts, not the best rate of each side.
    ratio = {name: statistics.median(api / before for before, api in runs) for name, runs in sides.items()}
    rate = {name: statistics.median(api for _, api in runs) for name, runs in sides.items()}
    direct_rate = statistics.median(before for runs in sides.values() for before, _ in runs)
    print(
        f"model {pipeline.version} ({checkpoint.name}), batch {BATCH}, steps {steps}, {args.requests} requests,"
        f" {args.rounds} rounds per API side, each after a direct run; medians"
    )
    for name, runs in sides.items():
        print(f"  {name:14s} rounds (direct / API clips/s): " + "  ".join(f"{d:.1f}/{a:.1f}" for d, a in runs))
    print(f"  direct pipeline         : {direct_rate:7.2f} clips/s")
    print(f"  API + in-process worker : {rate['in_process']:7.2f} clips/s   ratio {ratio['in_process']:5.2f}")
    print(
        f"  API + worker process    : {rate['worker_process']:7.2f} clips/s   ratio {ratio['worker_process']:5.2f}"
        "  (target >= 0.9)"
    )
    write_result(
        "generation",
        {
            "model": pipeline.version,
            "batch": BATCH,
            "steps": steps,
            "requests": args.requests,
            "rounds": args.rounds,
            "direct_clips_per_s": direct_rate,
            "api_clips_per_s": rate["in_process"],
            "ratio": ratio["in_process"],
            "worker_process_clips_per_s": rate["worker_process"],
            "worker_process_ratio": ratio["worker_process"],
            "rounds_direct_then_api": sides,
        },
    )


if __name__ == "__main__":
    main()

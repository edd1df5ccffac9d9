"""Mixed load: a bounded asyncio driver (httpx) against `soundalike serve` and one `soundalike worker`, each in its
own process, on a throw-away embedded PostgreSQL with the tiny model as the default model. Traffic stays on
127.0.0.1.

    .venv/bin/python benchmarks/load.py [--clients 8] [--seconds 60] [--drain-seconds 120] [--checkpoint PATH]
                                        [--model-threads 1]

Each client sends one request at a time, drawn at random (70 % searches, by vector or by a known generation id;
20 % status reads of generations; 5 % generation requests of one clip; 5 % imports of a 4 s WAV). Prints requests/s
and p50/p95/p99 per endpoint, the errors (any answer but the expected 2xx, or no answer), and the stuck jobs:
generations not finished and procrastinate jobs not done (`todo`, `doing`; the worker deletes the jobs that
succeed) --drain-seconds after the load ends, and how long each process took to stop. Goal: 0 errors, 0 stuck
jobs. Writes benchmarks/results/load.json (with the first error bodies and any traceback the server or the worker
logged).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psycopg  # noqa: E402

from benchmarks._harness import (  # noqa: E402
    STOP_SECONDS,
    benchmark_checkpoint,
    running,
    service_env,
    throwaway_database,
    write_result,
)
from benchmarks.generation import PROMPTS  # noqa: E402
from benchmarks.imports import make_files  # noqa: E402
from service.db.server import urls  # noqa: E402

MIX = {"search": 70, "status": 20, "generate": 5, "import": 5}
EXPECTED = {"search": {200}, "status": {200}, "generate": {202}, "import": {201}}
UNFINISHED = ("pending", "running")
SEED_IMPORTS = 8
START_SECONDS = 300  # generous: a busy 2-core machine starts a torch process slowly
TEST_CACHE = Path(__file__).resolve().parents[1] / "var" / "test-cache"


def tiny_checkpoint() -> Path:
    """The newest tiny model the test suite trained (var/test-cache), else the benchmarks' usual checkpoint."""
    found = sorted(TEST_CACHE.glob("tiny-[0-9a-f]*.pt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else benchmark_checkpoint()


def soundalike(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"soundalike {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


@contextmanager
def serving(env: dict[str, str], root: Path, clients: int, stopped: dict):
    """`soundalike serve` on a free port of 127.0.0.1, without the in-process worker; yields its URL when healthy."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **env,
        "SOUNDALIKE_SERVER_HOST": "127.0.0.1",
        "SOUNDALIKE_SERVER_PORT": str(port),
        "SOUNDALIKE_SERVER_RATE_LIMIT_PER_MINUTE": str(10**9),  # measuring the service, not the rate limiter
        "SOUNDALIKE_JOBS_IN_PROCESS_WORKER": "false",
        "SOUNDALIKE_DATABASE_POOL_SIZE": str(clients + 2),
    }
    url = f"http://127.0.0.1:{port}"
    with running("server", ["serve"], env, root, stopped) as process:
        deadline = time.perf_counter() + START_SECONDS
        while not healthy(url):
            if process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"the API server did not start; see {root / 'server.log'}")
            time.sleep(0.5)
        yield url


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


class Recorder:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.latencies: dict[str, list[float]] = {name: [] for name in MIX}
        self.errors: dict[str, int] = dict.fromkeys(MIX, 0)
        self.samples: list[str] = []  # the first error answers, for the report

    def note(self, endpoint: str, started: float, response: httpx.Response | None, problem: str = "") -> bool:
        self.latencies[endpoint].append(time.perf_counter() - started)
        if response is not None and response.status_code in EXPECTED[endpoint]:
            return True
        self.errors[endpoint] += 1
        if len(self.samples) < 20:
            answer = f"{response.status_code} {response.text[:300]}" if response is not None else problem
            self.samples.append(f"{endpoint}: {answer}")
        return False


class Traffic:
    """The known items (for searches by id and status reads) and one request of each kind."""

    def __init__(self, client: httpx.AsyncClient, dim: int, wavs: list[bytes], recorder: Recorder) -> None:
        self.client, self.dim, self.wavs, self.recorder = client, dim, wavs, recorder
        self.known: list[str] = []  # imported items (searchable)
        self.generated: list[str] = []  # generation ids this run asked for

    async def send(self, endpoint: str, rng: random.Random) -> None:
        started = time.perf_counter()
        try:
            response = await getattr(self, endpoint.replace("import", "import_file"))(rng)
        except httpx.HTTPError as error:
            self.recorder.note(endpoint, started, None, f"{type(error).__name__}: {error}")
            return
        if self.recorder.note(endpoint, started, response):
            if endpoint == "generate":
                self.generated += response.json()["ids"]
            elif endpoint == "import":
                self.known.append(response.json()["id"])

    async def search(self, rng: random.Random) -> httpx.Response:
        if rng.random() < 0.5:
            body = {"generation_id": rng.choice(self.known), "limit": 10}
        else:
            vector = np.random.default_rng(rng.getrandbits(32)).standard_normal(self.dim)
            body = {"vector": vector.tolist(), "limit": 10}
        return await self.client.post("/v1/search", json=body)

    async def status(self, rng: random.Random) -> httpx.Response:
        return await self.client.get(f"/v1/generations/{rng.choice(self.generated or self.known)}")

    async def generate(self, rng: random.Random) -> httpx.Response:
        body = {"prompt": rng.choice(PROMPTS), "batch_size": 1, "seed": rng.randrange(2**31)}
        return await self.client.post("/v1/generations", json=body)

    async def import_file(self, rng: random.Random) -> httpx.Response:
        files = {"file": ("clip.wav", rng.choice(self.wavs), "audio/wav")}
        return await self.client.post("/v1/imports", files=files, data={"tags": "load"})


async def drive(traffic: Traffic, clients: int, seconds: float) -> float:
    names, weights = list(MIX), list(MIX.values())
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        rng = random.Random(number)
        while time.perf_counter() < deadline:
            await traffic.send(rng.choices(names, weights)[0], rng)

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return time.perf_counter() - started


async def unfinished(client: httpx.AsyncClient, ids: list[str]) -> list[str]:
    """The ids among ``ids`` still pending or running (read 100 at a time, as a client polls a batch)."""
    left = []
    for start in range(0, len(ids), 100):
        page = ids[start : start + 100]
        response = await client.get("/v1/generations", params={"ids": page, "limit": 100})
        response.raise_for_status()
        seen = {item["id"]: item["status"] for item in response.json()["items"]}
        left += [i for i in page if seen.get(i) in UNFINISHED]
    return left


async def drain(client: httpx.AsyncClient, ids: list[str], seconds: float) -> tuple[list[str], float]:
    started = time.perf_counter()
    left = await unfinished(client, ids)
    while left and time.perf_counter() - started < seconds:
        await asyncio.sleep(1)
        left = await unfinished(client, left)
    return left, time.perf_counter() - started


def job_states(handle) -> dict[str, int]:
    with psycopg.connect(urls.libpq_url(handle.migration_url)) as conn:
        return dict(conn.execute("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1").fetchall())


def tracebacks(*logs: Path) -> list[str]:
    """Each traceback a log holds (up to 5 per log), with the lines that follow it."""
    found = []
    for log in logs:
        lines = log.read_text(errors="replace").splitlines()
        starts = [n for n, line in enumerate(lines) if line.startswith("Traceback")]
        found += [f"{log.name}:\n" + "\n".join(lines[n : n + 40]) for n in starts[:5]]
    return found


def percentile(ordered: list[float], share: float) -> float:
    return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def report(recorder: Recorder, wall: float) -> dict:
    rows = {}
    print(f"{'endpoint':9} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for name, latencies in recorder.latencies.items():
        ordered = sorted(latencies)
        rows[name] = {
            "requests": len(ordered),
            "per_second": len(ordered) / wall,
            "p50_ms": percentile(ordered, 0.5),
            "p95_ms": percentile(ordered, 0.95),
            "p99_ms": percentile(ordered, 0.99),
            "errors": recorder.errors[name],
        }
        r = rows[name]
        print(
            f"{name:9} {r['requests']:8d} {r['per_second']:7.1f} {r['p50_ms']:7.1f} {r['p95_ms']:7.1f} "
            f"{r['p99_ms']:7.1f} {r['errors']:6d}"
        )
    total = sum(r["requests"] for r in rows.values())
    print(f"{'all':9} {total:8d} {total / wall:7.1f}   errors {sum(recorder.errors.values())}")
    return rows


async def run(url: str, key: str, dim: int, wavs: list[bytes], args) -> dict:
    recorder = Recorder()
    limits = httpx.Limits(max_connections=args.clients + 1, max_keepalive_connections=args.clients + 1)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:
        traffic = Traffic(client, dim, wavs, recorder)
        for n in range(SEED_IMPORTS):  # items to search by and read before the load starts
            await traffic.send("import", random.Random(n))
        warm = await client.post("/v1/generations?wait=60", json={"prompt": PROMPTS[0], "batch_size": 1})
        warm.raise_for_status()  # the worker has loaded the model
        if not traffic.known or sum(recorder.errors.values()):
            raise RuntimeError(f"the catalogue could not be seeded: {recorder.samples}")
        answer = warm.json()  # 200 with the finished items, or 202 with the ids if not done within the wait
        traffic.generated += [item["id"] for item in answer["items"]] if "items" in answer else answer["ids"]
        recorder.reset()  # the seeding is not part of the measurement
        wall = await drive(traffic, args.clients, args.seconds)
        print(f"{args.clients} clients for {wall:.1f} s against {url}")
        rows = report(recorder, wall)
        stuck, waited = await drain(client, traffic.generated, args.drain_seconds)
    return {
        "wall_s": wall,
        "endpoints": rows,
        "errors": sum(recorder.errors.values()),
        "error_samples": recorder.samples,
        "generations_requested": len(traffic.generated),
        "stuck_generations": stuck,
        "drain_s": waited,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--drain-seconds", type=float, default=120, help="how long jobs may take to finish after")
    parser.add_argument("--checkpoint", type=Path, default=None, help="[the newest tiny model in var/test-cache]")
    parser.add_argument("--model-threads", type=int, default=1, help="the worker's SOUNDALIKE_MODEL_THREADS [1]")
    args = parser.parse_args()
    checkpoint = args.checkpoint or tiny_checkpoint()
    with throwaway_database() as (handle, root):
        env = service_env(handle, root)
        soundalike(env, "models", "add", str(checkpoint), "--alias", "tiny", "--default")
        key = soundalike(env, "keys", "create", "--role", "creator", "--owner", "load").strip().splitlines()[-1]
        from service.ml.pipeline import Pipeline

        config = Pipeline.load(checkpoint).config
        make_files(root / "audio", 8, config.sample_rate, config.clip_seconds)
        wavs = [p.read_bytes() for p in sorted((root / "audio").glob("*.wav"))]
        stopped: dict[str, float | None] = {}
        # The worker shares the 2 cores with the API and PostgreSQL: one torch thread per call keeps it from
        # starving them (docs/performance.md, "Mixed load"); --model-threads overrides.
        worker_env = {**env, "SOUNDALIKE_MODEL_THREADS": str(args.model_threads)}
        with (
            running("worker", ["worker"], worker_env, root, stopped),
            serving(env, root, args.clients, stopped) as url,
        ):
            result = asyncio.run(run(url, key, config.latent_dim, wavs, args))
        jobs = job_states(handle)
        logged = tracebacks(root / "server.log", root / "worker.log")
    stuck_jobs = sum(count for status, count in jobs.items() if status in ("todo", "doing"))
    print(f"after {result['drain_s']:.0f} s of drain: {len(result['stuck_generations'])} generations unfinished,")
    print(f"procrastinate jobs {jobs} ({stuck_jobs} not done); {result['errors']} errors")
    print(f"seconds to stop after Ctrl-C (None: killed after {STOP_SECONDS} s): {stopped}")
    for sample in result["error_samples"][:5]:
        print("  error:", sample)
    for trace in logged[:3]:
        print(trace)
    path = write_result(
        "load",
        {
            "clients": args.clients,
            "seconds": args.seconds,
            "model_threads": args.model_threads,
            "mix_percent": MIX,
            "checkpoint": checkpoint.name,
            "load_average": os.getloadavg(),
            **result,
            "procrastinate_jobs": jobs,
            "stuck_jobs": stuck_jobs,
            "stop_s": stopped,
            "tracebacks": logged,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

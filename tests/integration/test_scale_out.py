"""Several API processes and several workers against one PostgreSQL and one Redis, as separate OS processes:
`soundalike serve --workers 2` (uvicorn's supervisor, two API processes on one port) plus one more `serve` on
another port, and two `soundalike worker`s making real generations with the tests' tiny model. The per-key rate
limit holds across the API processes, every job is started by one worker only, and a worker SIGKILLed mid-job
loses nothing: its job stops heart-beating, the other worker's sweep retries it and finishes it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.conftest import register_test_model
from tests.integration.live_server import insert_key
from tests.integration.test_cli import _free_port, assert_one_line_error, external, soundalike
from tests.integration.test_serve_embedded import _wait_ready

RATE_LIMIT = 8
REQUESTS = 4  # generation requests: one job each
BATCH = 4
STARTED = re.compile(r"Starting job soundalike:generate\[(\d+)\]")


def test_serve_and_worker_refuse_fewer_than_one_process():
    # generous timeouts: the interpreter's start-up is all these do, but a loaded machine can stretch it
    refused = soundalike("serve", "--workers", "0", timeout=600)
    assert_one_line_error(refused, "--workers must be at least 1 (got 0)")
    refused = soundalike("worker", "--concurrency", "0", timeout=600)
    assert_one_line_error(refused, "--concurrency must be at least 1 (got 0)")


@pytest.fixture(scope="module")
def scale_database(make_database):
    from service.db.schema import migrate

    handle, settings = make_database("soundalike_scale")
    migrate.upgrade(handle.migration_url, settings.app_role)
    return handle


def _spawn(command: list[str], env: dict[str, str], log: Path, stack: ExitStack) -> subprocess.Popen:
    out = stack.enter_context(log.open("w"))
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", *command], env=env, stdout=out, stderr=out)
    stack.callback(_stop, proc)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _started_jobs(log: Path) -> list[int]:
    return [int(job) for job in STARTED.findall(log.read_text())]


def _until(condition, what: str, timeout: float = 600, processes: tuple[subprocess.Popen, ...] = ()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        assert all(proc.poll() is None for proc in processes), f"a process exited while waiting for {what}"
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture(scope="module")
def fleet(scale_database, redis_url, tmp_path_factory):
    """`serve --workers 2` on one port and one more `serve` on another, sharing one Redis; the environment every
    process of this deployment gets (workers included) and the logs."""
    tmp = tmp_path_factory.mktemp("fleet")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SOUNDALIKE_")},
        **external(scale_database),
        "SOUNDALIKE_ENV": "test",
        "SOUNDALIKE_CACHE_URL": redis_url,
        "SOUNDALIKE_CACHE_PREFIX": f"scale-{uuid.uuid4().hex}:",
        "SOUNDALIKE_SERVER_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
        "SOUNDALIKE_JOBS_IN_PROCESS_WORKER": "false",
        "SOUNDALIKE_JOBS_HEARTBEAT_SECONDS": "1",
        "SOUNDALIKE_JOBS_STALLED_AFTER_SECONDS": "3",
        "SOUNDALIKE_JOBS_SWEEP_CRON": "* * * * * *",
        "SOUNDALIKE_STORAGE_BLOB_DIR": str(tmp / "blobs"),
        "SOUNDALIKE_STORAGE_ARCHIVE_DIR": str(tmp / "archive"),
    }
    ports = [_free_port(), _free_port()]
    logs = {name: tmp / f"{name}.log" for name in ("api-a", "api-b", "worker-1", "worker-2")}
    with ExitStack() as stack:
        api_a = _spawn(["serve", "--no-migrate", "--workers", "2", "--port", str(ports[0])], env, logs["api-a"], stack)
        api_b = _spawn(["serve", "--no-migrate", "--port", str(ports[1])], env, logs["api-b"], stack)
        for port, proc in zip(ports, (api_a, api_b), strict=True):
            assert _wait_ready(port, proc, timeout=600)["cache"] == "redis", logs["api-a"].read_text()
        yield {
            "urls": [f"http://127.0.0.1:{port}" for port in ports],
            "env": env,
            "logs": logs,
            "api_a": api_a,
            "stack": stack,
        }


@pytest.mark.slow
def test_serve_workers_runs_api_processes_that_share_one_rate_limit(fleet, scale_database):
    from service.db.engine import connect_sync

    assert "2 API processes" in fleet["logs"]["api-a"].read_text()
    assert len(_children(fleet["api_a"].pid)) >= 2  # the two API processes (and multiprocessing's helper, if any)
    with connect_sync(scale_database.migration_url, autocommit=True) as conn:
        limited = insert_key(conn, "rita", "reader")
    rita = {"Authorization": f"Bearer {limited}"}
    urls = fleet["urls"]
    statuses = [httpx.get(f"{urls[i % 2]}/v1/me", headers=rita, timeout=60).status_code for i in range(RATE_LIMIT + 2)]
    assert statuses == [200] * RATE_LIMIT + [429, 429]


@pytest.mark.slow
def test_two_workers_share_the_jobs_of_two_api_processes_and_a_sigkill_loses_nothing(
    fleet, scale_database, tiny_pipeline, tiny_checkpoint
):
    from service.db.engine import connect_sync

    conn = connect_sync(scale_database.migration_url, autocommit=True)
    model = register_test_model(conn, tiny_pipeline, tiny_checkpoint, "tiny", default=False)  # asked for by name
    creator = insert_key(conn, "alice", "creator")
    env, logs, urls, stack = fleet["env"], fleet["logs"], fleet["urls"], fleet["stack"]
    workers = {name: _spawn(["worker"], env, logs[name], stack) for name in ("worker-1", "worker-2")}

    # Real generations through both API processes; the workers share the jobs.
    alice = {"Authorization": f"Bearer {creator}"}
    ids = []
    for i in range(REQUESTS):
        body = {"prompt": "strings, minor", "seed": i, "steps": 150, "batch_size": BATCH, "model": "tiny"}
        answer = httpx.post(f"{urls[i % 2]}/v1/generations", json=body, headers=alice, timeout=60)
        assert answer.status_code == 202, answer.text
        ids += answer.json()["ids"]
    jobs = {
        job for (job,) in conn.execute("SELECT DISTINCT job_id FROM generations WHERE id = ANY(%s::uuid[])", (ids,))
    }
    assert len(jobs) == REQUESTS

    def running(name: str) -> int | None:
        """The generate job this worker started that is still being done, if any."""
        started = _started_jobs(logs[name])
        doing = {j for (j,) in conn.execute("SELECT id FROM procrastinate_jobs WHERE status = 'doing'")}
        return next((job for job in reversed(started) if job in doing), None)

    # Both workers busy at once; worker-1 is killed with its job in hand.
    victim, survivor = "worker-1", "worker-2"
    killed_job = _until(
        lambda: running(victim) if running(survivor) else None,
        "both workers running a job",
        timeout=1800,
        processes=tuple(workers.values()),
    )
    workers[victim].send_signal(signal.SIGKILL)
    workers[victim].wait(timeout=30)
    assert conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", (killed_job,)).fetchone()[0] == "doing"

    def finished() -> bool:
        statuses = conn.execute(
            "SELECT status, count(*) FROM generations WHERE id = ANY(%s::uuid[]) GROUP BY status", (ids,)
        ).fetchall()
        assert "failed" not in dict(statuses), statuses
        return dict(statuses).get("succeeded") == len(ids)

    _until(finished, "every generation succeeded", timeout=1800, processes=(workers[survivor],))
    # procrastinate deletes a job that succeeded
    _until(
        lambda: not conn.execute("SELECT 1 FROM procrastinate_jobs WHERE id = ANY(%s)", (list(jobs),)).fetchone(),
        "every job finished",
        timeout=300,
    )

    started = {name: _started_jobs(logs[name]) for name in (victim, survivor)}
    # Every job was started once, except the killed one: by its worker and once more by the survivor.
    assert sorted(started[victim] + started[survivor]) == sorted([*jobs, killed_job])
    assert started[victim].count(killed_job) == 1 and started[survivor].count(killed_job) == 1
    assert "retrying" in logs[survivor].read_text()
    assert set(started[survivor]) - {killed_job}, "the survivor did jobs of its own"

    # The rows of every generation were written once.
    rows = conn.execute(
        "SELECT (SELECT count(*) FROM latent_embeddings WHERE generation_id = ANY(%(ids)s::uuid[])),"
        " (SELECT count(DISTINCT generation_id) FROM latent_embeddings WHERE generation_id = ANY(%(ids)s::uuid[])),"
        " (SELECT count(*) FROM audio_assets WHERE generation_id = ANY(%(ids)s::uuid[]))",
        {"ids": ids},
    ).fetchone()
    assert rows == (len(ids), len(ids), len(ids))

    # The workers' model statistics reached the registry (a killed worker's unflushed call is lost, no more).
    stats = {
        operation: counts
        for operation, *counts in conn.execute(
            "SELECT operation, calls, items, errors FROM model_inference_stats WHERE model_id = %s", (model["id"],)
        )
    }
    calls, items, errors = stats["generate"]
    assert REQUESTS - 1 <= calls <= REQUESTS and items == calls * BATCH and errors == 0
    assert "load" in stats
    conn.close()

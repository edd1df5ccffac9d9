"""Several API processes against one PostgreSQL and one Redis, as separate OS processes: `soundalike serve
--workers 2` (uvicorn's supervisor, two API processes on one port) plus one more `serve` on another port. The
per-key rate limit holds across the API processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.integration.live_server import insert_key
from tests.integration.test_cli import _free_port, assert_one_line_error, external, soundalike
from tests.integration.test_serve_embedded import _wait_ready

RATE_LIMIT = 8


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

"""Two `soundalike serve` processes against one PostgreSQL (the session's embedded server) and one Redis: the
per-key rate limit holds across them, and `soundalike keys revoke` shuts a key out of both at once."""

from __future__ import annotations

import subprocess
import sys
import uuid
from contextlib import ExitStack

import httpx
import pytest

from service.domain.access.api_keys import KEY_PREFIX, hash_key
from service.settings import DEFAULT_AUTH_SECRET
from tests.integration.test_cli import _free_port, external, soundalike
from tests.integration.test_serve_embedded import _wait_ready

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet_database(make_database):
    """A database of its own: `serve` registers the shipped model and a first admin key in it."""
    from service.db.schema import migrate

    handle, settings = make_database("soundalike_fleet")
    migrate.upgrade(handle.migration_url, settings.app_role)
    return handle


def _issue_key(handle, owner: str) -> tuple[int, str]:
    from service.db.engine import connect_sync

    key = f"{KEY_PREFIX}fleet-{uuid.uuid4().hex}"
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        key_id = conn.execute(
            "INSERT INTO api_keys (key_hash, prefix, owner, role) VALUES (%s, %s, %s, 'reader') RETURNING id",
            (hash_key(key, DEFAULT_AUTH_SECRET), key[:10], owner),
        ).fetchone()[0]
    return key_id, key


def test_two_serve_processes_share_one_rate_limit_and_one_key_cache(fleet_database, redis_url, tmp_path):
    env = {
        **external(fleet_database),
        "PATH": "/usr/bin:/bin",
        "SOUNDALIKE_ENV": "test",
        "SOUNDALIKE_CACHE_URL": redis_url,
        "SOUNDALIKE_CACHE_PREFIX": f"fleet-{uuid.uuid4().hex}:",
        "SOUNDALIKE_SERVER_RATE_LIMIT_PER_MINUTE": "4",
        "SOUNDALIKE_AUTH_KEY_CACHE_SECONDS": "300",  # only the shared cache can make a revocation immediate
        "SOUNDALIKE_JOBS_IN_PROCESS_WORKER": "false",
        "SOUNDALIKE_STORAGE_BLOB_DIR": str(tmp_path / "blobs"),
    }
    ports = [_free_port(), _free_port()]
    with ExitStack() as stack:
        processes = []
        for index, port in enumerate(ports):
            log = stack.enter_context((tmp_path / f"serve-{index}.log").open("w"))
            command = [sys.executable, "-m", "service.cli", "serve", "--no-migrate", "--port", str(port)]
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            stack.callback(_stop, proc)
            processes.append(proc)
        for port, proc in zip(ports, processes, strict=True):
            assert _wait_ready(port, proc, timeout=120)["cache"] == "redis"

        _, limited_key = _issue_key(fleet_database, "rita")
        urls = [f"http://127.0.0.1:{port}/v1/me" for port in ports]
        statuses = [
            httpx.get(urls[i % 2], headers={"Authorization": f"Bearer {limited_key}"}, timeout=30).status_code
            for i in range(6)
        ]
        assert statuses == [200, 200, 200, 200, 429, 429]

        key_id, key = _issue_key(fleet_database, "sam")
        headers = {"Authorization": f"Bearer {key}"}
        assert [httpx.get(url, headers=headers, timeout=30).status_code for url in urls] == [200, 200]
        revoked = soundalike("keys", "revoke", str(key_id), env=env)
        assert revoked.returncode == 0 and "refuse it now" in revoked.stdout, revoked.stderr
        assert [httpx.get(url, headers=headers, timeout=30).status_code for url in urls] == [401, 401]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=60)

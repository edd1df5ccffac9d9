"""A restore under a serving process: `soundalike restore` refuses while other sessions use the database and
names them; a restore done behind the service's back (pg_restore by hand) kills the in-process job worker,
and /ready then answers 503 instead of accepting work that would never run."""

import asyncio
import time

import pytest

from service.db.recovery import backup
from service.db.schema import migrate
from tests.integration.api_helpers import api_client, api_settings
from tests.integration.test_cli import external, soundalike

pytestmark = pytest.mark.slow


def migrated(make_database, name: str):
    handle, settings = make_database(name)
    migrate.upgrade(handle.migration_url, settings.app_role)
    return handle


async def test_restore_is_refused_while_a_server_uses_the_database(make_database, tmp_path):
    handle = migrated(make_database, "restore_refused")
    dump = backup.backup(handle.migration_url, tmp_path / "live.dump").path
    restore = ("restore", str(dump), "--yes", "--no-index")
    async with api_client(handle, api_settings(handle, tmp_path), worker=True) as client:
        assert (await client.get("/ready")).json()["worker"] == "running"
        refused = await asyncio.to_thread(soundalike, *restore, env=external(handle))
        assert refused.returncode == 1, refused.stdout
        assert "other session(s) are connected to the database: pid " in refused.stderr
        assert "as soundalike_app" in refused.stderr and "Stop the processes using it first" in refused.stderr
        assert (await client.get("/ready")).status_code == 200  # the server never noticed
    backup.refuse_while_connected(handle.migration_url)  # the server gone, nothing is in the way


async def test_ready_reports_a_worker_killed_by_a_restore_behind_its_back(make_database, tmp_path):
    handle = migrated(make_database, "restore_behind")
    dump = backup.backup(handle.migration_url, tmp_path / "live.dump").path
    async with api_client(handle, api_settings(handle, tmp_path), worker=True) as client:
        await asyncio.to_thread(backup.restore, handle.migration_url, dump)  # what pg_restore by hand does
        deadline = time.monotonic() + 60
        while (ready := await client.get("/ready")).status_code == 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert ready.status_code == 503, ready.text
        assert ready.headers["content-type"].startswith("application/problem+json")
        assert "the in-process job worker stopped" in ready.json()["detail"]

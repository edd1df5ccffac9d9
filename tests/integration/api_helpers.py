"""Helpers for API tests: settings with private storage, apps with or without a worker, keys, polling."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from litestar.testing import AsyncTestClient

from service.app import create_app
from service.domain.access import api_keys
from service.settings import DatabaseSettings, JobsSettings, Settings, StorageSettings


def api_settings(database, tmp_path, **jobs) -> Settings:
    """Test settings; webhooks may go to 127.0.0.1, where the tests' receivers listen."""
    jobs = {"heartbeat_seconds": 1, "stalled_after_seconds": 3, "webhook_allow_private_hosts": True, **jobs}
    return Settings(
        env="test",
        database=DatabaseSettings(url=database.app_url, migration_url=database.migration_url),
        storage=StorageSettings(blob_dir=tmp_path / "blobs", archive_dir=tmp_path / "archive"),
        jobs=JobsSettings(**jobs),
    )


@asynccontextmanager
async def api_client(database, settings: Settings, worker: bool):
    app = create_app(database.app_url, settings, run_worker_in_process=worker)
    async with AsyncTestClient(app, timeout=120) as client:
        yield client


async def bearer_for(client, owner: str, role: str) -> dict[str, str]:
    async with client.app.state.sessionmaker() as session:
        issued = await api_keys.create_key(session, client.app.state.settings.auth.secret, owner, role)
        await session.commit()
    return {"Authorization": f"Bearer {issued.key}"}


async def wait_until_finished(client, headers, generation_id, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = (await client.get(f"/v1/generations/{generation_id}", headers=headers)).json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"generation {generation_id} did not finish in {timeout} s")

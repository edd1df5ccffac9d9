"""A generation whose job fails keeps the error and leaves no audio or latent rows; rate limits per key; the
model is RUNNING only while a job uses it."""

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from service.db.engine import create_engine, session_factory
from service.domain.generation import production
from service.domain.models.inference_thread import InferenceThread
from service.domain.models.model_cache import ModelCache
from service.settings import Settings
from service.storage import BlobStore
from tests.integration.api_helpers import api_client, api_settings, bearer_for, wait_until_finished

pytestmark = pytest.mark.slow


async def test_failed_job_keeps_the_error_and_stores_nothing(database, tiny_model, tmp_path, owner_conn):
    owner_conn.execute("UPDATE models SET checkpoint_path = %s", (str(tmp_path / "missing.pt"),))
    async with api_client(database, api_settings(database, tmp_path), worker=True) as client:
        alice = await bearer_for(client, "alice", "creator")
        ids = (await client.post("/v1/generations", json={"prompt": "bass", "batch_size": 2}, headers=alice)).json()[
            "ids"
        ]
        for generation_id in ids:
            done = await wait_until_finished(client, alice, generation_id, timeout=60)
            assert done["status"] == "failed" and "missing.pt" in done["error"]
            assert done["links"]["audio"] is None and done["links"]["latent"] is None
            assert (await client.get(f"/v1/generations/{generation_id}/audio", headers=alice)).status_code == 404
    for table in ("audio_assets", "latent_embeddings"):
        assert owner_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    assert not (tmp_path / "blobs").exists() or not any((tmp_path / "blobs").rglob("*.wav"))


async def test_rate_limit_is_per_key(database, tiny_model, tmp_path):
    settings = api_settings(database, tmp_path)
    settings.server.rate_limit_per_minute = 3
    async with api_client(database, settings, worker=False) as client:
        alice, bob = await bearer_for(client, "alice", "reader"), await bearer_for(client, "bob", "reader")
        statuses = [(await client.get("/v1/me", headers=alice)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert (await client.get("/v1/me", headers=bob)).status_code == 200
        assert (await client.get("/health")).status_code == 200


class WatchedModels:
    """The real model cache, noting the model's registry status as each call starts; ``fail`` raises instead."""

    def __init__(self, cache, owner_conn, fail: bool = False) -> None:
        self.cache, self.owner_conn, self.fail, self.seen = cache, owner_conn, fail, []

    async def run(self, model_id, work, operation="inference", items=1):
        self.seen.append(self.owner_conn.execute("SELECT status FROM models WHERE id = %s", (model_id,)).fetchone()[0])
        if self.fail:
            raise RuntimeError("the model fell over")
        return await self.cache.run(model_id, work, operation=operation, items=items)


@dataclass
class Requested:
    """Two clips requested through the API (no worker ran them), and what ``production.produce`` needs."""

    ids: list[uuid.UUID]
    sessions: async_sessionmaker
    cache: ModelCache
    settings: Settings

    def store(self, kind: type[BlobStore] = BlobStore) -> BlobStore:
        return kind(self.settings.storage.blob_dir, self.settings.storage.archive_dir)


@pytest.fixture
async def requested(database, tiny_model, tmp_path):
    settings = api_settings(database, tmp_path)
    engine = create_engine(database.app_url, settings.database)
    cache = ModelCache(session_factory(engine), inference=InferenceThread(1))
    try:
        async with api_client(database, settings, worker=False) as client:
            alice = await bearer_for(client, "alice", "creator")
            body = {"prompt": "bass", "batch_size": 2, "steps": 2}
            ids = [uuid.UUID(i) for i in (await client.post("/v1/generations", json=body, headers=alice)).json()["ids"]]
        yield Requested(ids, session_factory(engine), cache, settings)
    finally:
        cache.close()
        await engine.dispose()


@pytest.mark.parametrize("fail", [False, True])
async def test_the_model_is_running_only_while_a_job_uses_it(requested, tiny_model, owner_conn, fail):
    models = WatchedModels(requested.cache, owner_conn, fail)
    if fail:
        with pytest.raises(RuntimeError, match="fell over"):
            await production.produce(requested.sessions, requested.store(), models, requested.ids)
    else:
        assert await production.produce(requested.sessions, requested.store(), models, requested.ids) == requested.ids
    assert models.seen == ["RUNNING"]
    assert owner_conn.execute("SELECT status FROM models WHERE id = %s", (tiny_model["id"],)).fetchone()[0] == "READY"
    statuses = {row[0] for row in owner_conn.execute("SELECT status FROM generations")}
    assert statuses == {"failed" if fail else "succeeded"}


class FullDisk(BlobStore):
    def write(self, blobs):
        raise OSError("No space left on device")


async def test_audio_that_cannot_be_stored_fails_the_job_and_commits_no_rows(requested, tiny_model, owner_conn):
    with pytest.raises(OSError, match="No space left"):
        await production.produce(requested.sessions, requested.store(FullDisk), requested.cache, requested.ids)
    rows = owner_conn.execute("SELECT status, error FROM generations").fetchall()
    assert [status for status, _ in rows] == ["failed", "failed"] and "No space left" in rows[0][1]
    for table in ("audio_assets", "latent_embeddings"):
        assert owner_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    assert owner_conn.execute("SELECT status FROM models WHERE id = %s", (tiny_model["id"],)).fetchone()[0] == "READY"

"""A generation whose job fails keeps the error and leaves no audio or latent rows; rate limits per key."""

import pytest

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

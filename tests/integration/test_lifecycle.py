"""Archival, purge of deleted items and the orphan sweep, on real generations and real files."""

import os
import time

import pytest

from service.domain.catalogue.lifecycle import run_lifecycle
from tests.integration.api_helpers import api_client, api_settings, bearer_for

pytestmark = pytest.mark.slow


async def test_archive_purge_and_orphan_sweep(database, tiny_model, tmp_path, owner_conn):
    settings = api_settings(database, tmp_path)
    async with api_client(database, settings, worker=True) as client:
        alice = await bearer_for(client, "alice", "creator")
        body = {"prompt": "organ", "seed": 11, "steps": 3, "batch_size": 3}
        old, deleted, fresh = [
            item["id"]
            for item in (await client.post("/v1/generations?wait=60", json=body, headers=alice)).json()["items"]
        ]
        owner_conn.execute("UPDATE generations SET created_at = now() - interval '200 days' WHERE id = %s", (old,))
        assert (await client.delete(f"/v1/generations/{deleted}", headers=alice)).status_code == 204
        store = client.app.state.store
        orphan = store.put(b"no row points here", ".wav")
        past = time.time() - 7200
        os.utime(orphan.path, (past, past))
        old_uri = owner_conn.execute("SELECT uri FROM audio_assets WHERE generation_id = %s", (old,)).fetchone()[0]

        async with client.app.state.sessionmaker() as session:
            report = await run_lifecycle(session, store, retention_days=180, orphan_grace_seconds=3600)
        assert (report.archived, report.purged, report.orphans_removed) == (1, 1, 1)

        # archived: out of the HNSW table, still readable, audio moved to the archive area
        in_index = owner_conn.execute("SELECT count(*) FROM latent_embeddings WHERE generation_id = %s", (old,))
        assert in_index.fetchone()[0] == 0
        assert (
            owner_conn.execute("SELECT count(*) FROM archived_latents WHERE generation_id = %s", (old,)).fetchone()[0]
            == 1
        )
        shown = (await client.get(f"/v1/generations/{old}", headers=alice)).json()
        assert shown["archived_at"] is not None and shown["links"]["latent"]
        assert (await client.get(shown["links"]["latent"], headers=alice)).json()["dim"] == 512
        assert (await client.get(shown["links"]["audio"], headers=alice)).status_code == 200
        assert not store.path(old_uri).exists() and (tmp_path / "archive").exists()

        # purged: the deleted item's audio and latent rows are gone; the fresh one is untouched
        for table in ("audio_assets", "latent_embeddings"):
            left = owner_conn.execute(f"SELECT count(*) FROM {table} WHERE generation_id = %s", (deleted,))
            assert left.fetchone()[0] == 0
        assert (await client.get(f"/v1/generations/{fresh}/audio", headers=alice)).status_code == 200
        assert not orphan.path.exists()

        # the deleted item's file goes with the next sweep once past the grace period
        async with client.app.state.sessionmaker() as session:
            again = await run_lifecycle(session, store, retention_days=180, orphan_grace_seconds=0)
        assert (again.archived, again.purged) == (0, 0) and again.orphans_removed == 1
        assert (await client.get(f"/v1/generations/{fresh}/audio", headers=alice)).status_code == 200

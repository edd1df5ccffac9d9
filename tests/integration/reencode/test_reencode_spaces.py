"""What follows a re-encode besides search: archived items (their new latents stay out of the HNSW index), the
FAISS mirror of the new space, and folder imports (`soundalike import`) while a re-encode is running. The chunks
run through the job's own body (``run_chunk_job``) with the worker's model cache."""

from __future__ import annotations

import uuid

import numpy as np

from service.db.engine import connect_sync
from service.domain.catalogue import lifecycle
from service.domain.catalogue.bulk_import import audio_files, import_folder
from service.domain.catalogue.imports import ImportOptions
from service.domain.models import reencode
from service.domain.models.model_cache import ModelCache
from tests.integration.reencode.conftest import import_tone, latents_by_model, tone


async def reencode_now(client, body: dict) -> dict:
    """Create the batch through the API (no worker running), then run each chunk as a worker's job would."""
    response = await client.post("/v1/models/next/reencode", json=body, headers=client.admin)
    assert response.status_code == 202, response.text
    batch = response.json()
    state = client.app.state
    models = ModelCache(state.sessionmaker, size=2)
    for chunk in range(batch["params"]["chunks"]):
        await reencode.run_chunk_job(
            state.sessionmaker, client.database_url, state.store, models, uuid.UUID(batch["id"]), chunk
        )
    return (await client.get(f"/v1/batches/{batch['id']}", headers=client.admin)).json()


async def test_archived_items_and_the_faiss_mirror_follow(idle_client, owner_conn, database, tmp_path):
    from indexing.sync import sync_all

    client, new_id = idle_client, idle_client.models["new"]["id"]
    client.database_url = database.app_url
    live = [await import_tone(client, client.alice, i) for i in range(4)]
    old = await import_tone(client, client.alice, 4)
    owner_conn.execute("UPDATE generations SET created_at = now() - interval '400 days' WHERE id = %s", (old,))
    async with client.app.state.sessionmaker() as session:
        assert await lifecycle.archive_old(session, client.app.state.store, retention_days=180) == 1

    only_live = await reencode_now(client, {"from": "tiny"})
    assert (only_live["status"], only_live["total"]) == ("succeeded", 4)
    with_archived = await reencode_now(client, {"from": "tiny", "include_archived": True})
    assert (with_archived["status"], with_archived["total"]) == ("succeeded", 1)
    assert set(latents_by_model(owner_conn, new_id)) == set(live), "the archived item stays out of the index"
    archived = owner_conn.execute("SELECT generation_id::text, model_id FROM archived_latents ORDER BY model_id")
    assert [row[0] for row in archived] == [old, old], "its latent in both spaces, archived"

    results = {r.model: r for r in sync_all(database.app_url, tmp_path / "index")}
    assert results["next"].count == 4 and results["tiny"].count == 4


async def test_folder_import_during_a_reencode_lands_in_both_spaces(idle_client, owner_conn, database, tmp_path):
    client, new = idle_client, idle_client.models["new"]
    await import_tone(client, client.alice, 0)
    response = await client.post("/v1/models/next/reencode", json={"from": "tiny"}, headers=client.admin)
    assert response.status_code == 202 and response.json()["status"] == "pending"
    folder = tmp_path / "drop"
    folder.mkdir()
    for index in (5, 6, 7):
        (folder / f"tone-{index}.wav").write_bytes(tone(index)[0])
    old = client.models["old"]
    with connect_sync(database.app_url) as conn:
        report = import_folder(
            conn,
            client.app.state.store,
            old["pipeline"],
            old["id"],
            "alice",
            audio_files(folder),
            ImportOptions(),
            client.app.state.settings.storage,
        )
    assert report.imported == 3
    names = dict(owner_conn.execute("SELECT id::text, params->>'filename' FROM generations").fetchall())
    in_new, in_old = latents_by_model(owner_conn, new["id"]), latents_by_model(owner_conn, old["id"])
    assert sorted(names[gid] for gid in in_new) == ["tone-5.wav", "tone-6.wav", "tone-7.wav"]
    assert set(in_new) < set(in_old), "the batch's own item waits for the workers; the folder's are in both spaces"
    for gid, latent in in_new.items():
        expected = new["pipeline"].encode(tone(int(names[gid][5]))[1], 16_000)
        assert float(latent @ expected / np.linalg.norm(latent) / np.linalg.norm(expected)) > 0.999

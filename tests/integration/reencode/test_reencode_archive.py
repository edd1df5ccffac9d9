"""After a re-encode, `soundalike models archive OLD` drops OLD's latent space after a backup: its latents, archived
latents and windows are gone, the items keep theirs in the new space, and a search that names OLD is a clear 422.
While an item has a latent only in OLD's space, the archive is refused before any backup is taken."""

from __future__ import annotations

import pytest

from tests.integration.reencode.conftest import import_tone, latents_by_model, tone
from tests.integration.reencode.test_reencode_segments import import_long
from tests.integration.reencode.test_reencode_spaces import reencode_now
from tests.integration.test_cli import assert_one_line_error, external, soundalike

pytestmark = pytest.mark.slow  # CLI subprocesses and a pg_dump

TABLES = ("latent_embeddings", "archived_latents", "latent_segments")


def rows_in_space(owner_conn, model_id: int) -> dict[str, int]:
    return {
        table: owner_conn.execute(f"SELECT count(*) FROM {table} WHERE model_id = %s", (model_id,)).fetchone()[0]
        for table in TABLES
    }


async def test_archive_drops_the_old_space_after_a_backup(idle_client, owner_conn, database, tmp_path):
    client = idle_client
    client.database_url = database.app_url
    old, new = client.models["old"]["id"], client.models["new"]["id"]
    items = [await import_tone(client, client.alice, index) for index in range(3)]
    items.append(await import_long(client, "long.wav", 4))
    backups = tmp_path / "backups"
    env = external(database) | {"SOUNDALIKE_STORAGE_BACKUP_DIR": str(backups)}

    made_default = await client.patch("/v1/models/next", json={"is_default": True}, headers=client.admin)
    assert made_default.status_code == 200, made_default.text
    refused = soundalike("models", "archive", "tiny", env=env, timeout=600)
    assert_one_line_error(refused, "4 items have a latent only in model 'tiny'", "models reencode --from tiny")
    assert not backups.exists(), "nothing is backed up (or dropped) when the archive is refused"
    assert rows_in_space(owner_conn, old)["latent_embeddings"] == 4

    assert (await reencode_now(client, {"from": "tiny"}))["status"] == "succeeded"
    kept = rows_in_space(owner_conn, new)
    archived = soundalike("models", "archive", "tiny", env=env, timeout=600)
    assert archived.returncode == 0, archived.stderr
    [backup] = backups.glob("before-archive-tiny-*.dump")
    assert backup.stat().st_size > 0 and f"backup {backup}" in archived.stdout
    assert "dropped its 4 latents and 3 segment windows" in archived.stdout

    assert rows_in_space(owner_conn, old) == dict.fromkeys(TABLES, 0), "OLD's space is empty"
    assert rows_in_space(owner_conn, new) == kept and set(latents_by_model(owner_conn, new)) == set(items)
    status, dropped = owner_conn.execute(
        "SELECT status, metadata->'latents_dropped' FROM models WHERE id = %s", (old,)
    ).fetchone()
    assert status == "ARCHIVED" and (dropped["latents"], dropped["backup"]) == (4, str(backup))

    default_space = await client.post("/v1/search", json={"generation_id": items[0]}, headers=client.alice)
    assert default_space.status_code == 200 and default_space.json()["model"] == "next"
    assert {hit["id"] for hit in default_space.json()["items"]} == set(items[1:])
    probe = client.models["old"]["pipeline"].encode(tone(0)[1], 16_000).tolist()
    for body in (
        {"generation_id": items[0], "model": "tiny"},
        {"vector": probe, "model": "tiny"},
        {"vector": probe, "model": "tiny", "segments": True},
    ):
        response = await client.post("/v1/search", json=body, headers=client.alice)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["errors"][0]["field"] == "model" and "latents were dropped" in problem["detail"]

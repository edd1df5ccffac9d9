"""Segments follow a re-encode: a long item gets its windows in the new space (from the re-encode chunk, and from
an import into a model being re-encoded), so segment search works there too."""

from __future__ import annotations

from tests.integration.reencode.conftest import import_tone, tone
from tests.integration.reencode.test_reencode_spaces import reencode_now


def windows_by_model(owner_conn, generation_id: str) -> dict[int, list[tuple[float, float]]]:
    rows = owner_conn.execute(
        "SELECT model_id, start_seconds, end_seconds FROM latent_segments WHERE generation_id = %s "
        "ORDER BY model_id, start_seconds",
        (generation_id,),
    ).fetchall()
    found: dict[int, list[tuple[float, float]]] = {}
    for model_id, start, end in rows:
        found.setdefault(model_id, []).append((round(start, 3), round(end, 3)))
    return found


async def import_long(client, name: str, index: int) -> str:
    response = await client.post(
        "/v1/imports",
        files={"file": (name, tone(index, seconds=8.0)[0])},
        data={"visibility": "public"},
        headers=client.alice,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_long_items_get_their_windows_in_the_new_space(idle_client, owner_conn, database):
    client = idle_client
    client.database_url = database.app_url
    old, new = client.models["old"]["id"], client.models["new"]["id"]
    long_id = await import_long(client, "long.wav", 3)
    short_id = await import_tone(client, client.alice, 1)

    batch = await reencode_now(client, {"from": "tiny"})
    assert batch["status"] == "succeeded"
    windows = windows_by_model(owner_conn, long_id)
    assert windows[old] == windows[new] == [(0, 4), (2, 6), (4, 8)]
    assert windows_by_model(owner_conn, short_id) == {}

    response = await client.post(
        "/v1/search", json={"generation_id": short_id, "model": "next", "segments": True}, headers=client.alice
    )
    assert response.status_code == 200, response.text
    assert [hit["id"] for hit in response.json()["items"]] == [long_id]


async def test_a_long_import_during_a_reencode_gets_windows_in_both_spaces(idle_client, owner_conn):
    client = idle_client
    old, new = client.models["old"]["id"], client.models["new"]["id"]
    await import_tone(client, client.alice, 0)  # a re-encode needs an item to list
    response = await client.post("/v1/models/next/reencode", json={"from": "tiny"}, headers=client.admin)
    assert response.status_code == 202, response.text  # no worker: the batch stays pending, "next" follows "tiny"
    long_id = await import_long(client, "during.wav", 5)
    windows = windows_by_model(owner_conn, long_id)
    assert set(windows) == {old, new} and len(windows[old]) == len(windows[new]) == 3

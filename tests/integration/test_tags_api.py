"""Tags people can type: the vocabulary route, synonyms stored as canonical tags, case-insensitive filters,
and derived work (variants, style transfers) inheriting its source's tags."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.api_helpers import api_client, api_settings, bearer_for

DIM = 512


def seed(conn, model_id: int, tags: list[str], offset: int) -> uuid.UUID:
    generation_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO generations (id, owner, model_id, kind, status, visibility, tags, params) "
        "VALUES (%s, 'alice', %s, 'text2music', 'succeeded', 'private', %s, '{}')",
        (generation_id, model_id, tags),
    )
    vector = "[" + ",".join(str((i * (offset + 1)) % 11 + 1) for i in range(DIM)) + "]"
    conn.execute(
        "INSERT INTO latent_embeddings (generation_id, model_id, embedding) VALUES (%s, %s, %s::vector)",
        (generation_id, model_id, vector),
    )
    return generation_id


@pytest.fixture
async def client(database, owner_conn, empty_tables, tmp_path):
    model_id = owner_conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version, is_default) "
        "VALUES ('demo', 'demo', 'local', 'v1', true) RETURNING id"
    ).fetchone()[0]
    async with api_client(database, api_settings(database, tmp_path), worker=False) as client:
        client.alice = await bearer_for(client, "alice", "creator")
        client.piano = seed(owner_conn, model_id, ["piano", "minor", "80 bpm"], 0)
        client.strings = seed(owner_conn, model_id, ["strings", "major", "drums"], 1)
        yield client


def stored_tags(owner_conn, generation_id) -> list[str]:
    return owner_conn.execute("SELECT tags FROM generations WHERE id = %s", (generation_id,)).fetchone()[0]


async def test_the_vocabulary_lists_slots_synonyms_and_the_tempo_range(client):
    response = await client.get("/v1/tags", headers=client.alice)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "demo"
    slots = {slot["slot"]: {t["tag"]: t["synonyms"] for t in slot["tags"]} for slot in body["slots"]}
    assert set(slots) == {"family", "mode", "tempo", "drums"}
    assert "cello" in slots["family"]["strings"] and "sad" in slots["mode"]["minor"]
    assert (body["bpm"]["min_bpm"], body["bpm"]["max_bpm"]) == (60, 180)
    for example in body["examples"]:  # every example the route shows is accepted
        accepted = await client.post("/v1/generations", json={"prompt": example}, headers=client.alice)
        assert accepted.status_code == 202, accepted.text
    unknown = await client.get("/v1/tags", params={"model": "nope"}, headers=client.alice)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "model"


async def test_synonyms_are_stored_as_canonical_tags_and_the_prompt_is_kept(client, owner_conn):
    prompt = "Cello, sad, 90BPM, cello"
    response = await client.post("/v1/generations", json={"prompt": prompt, "seed": 3}, headers=client.alice)
    assert response.status_code == 202, response.text
    generation_id = response.json()["ids"][0]
    body = (await client.get(f"/v1/generations/{generation_id}", headers=client.alice)).json()
    assert body["tags"] == ["strings", "minor", "90 bpm"] and body["params"]["prompt"] == prompt


async def test_unknown_tags_point_to_the_vocabulary_route(client):
    response = await client.post("/v1/generations", json={"prompt": "celo, minor"}, headers=client.alice)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "GET /v1/tags" in detail and "'cello'" in detail and "known_tags()" not in detail


async def test_tag_filters_are_case_insensitive_and_know_synonyms(client):
    listed = await client.get("/v1/generations", params={"tags": ["STRINGS", "Happy"]}, headers=client.alice)
    assert [item["id"] for item in listed.json()["items"]] == [str(client.strings)]
    body = {"vector": [1.0] * DIM, "filter": {"tags_any": ["Violin"], "tags_all": ["With Drums"]}}
    found = await client.post("/v1/search", json=body, headers=client.alice)
    assert found.status_code == 200, found.text
    assert [item["id"] for item in found.json()["items"]] == [str(client.strings)]


async def test_a_style_transfer_takes_the_neighbours_instrument_and_keeps_the_rest(client, owner_conn):
    response = await client.post(
        f"/v1/generations/{client.piano}/style-transfer",
        headers=client.alice,
        json={"neighbor_id": str(client.strings)},
    )
    assert response.status_code == 202, response.text
    assert response.json()["tags"] == ["minor", "80 bpm", "strings"]


async def test_variants_inherit_their_sources_tags(client, owner_conn):
    response = await client.post(
        "/v1/variants", headers=client.alice, json={"ids": [str(client.piano), str(client.strings)], "n_per_source": 2}
    )
    assert response.status_code == 202, response.text
    tags = {tuple(stored_tags(owner_conn, g)) for g in response.json()["generation_ids"]}
    assert tags == {("piano", "minor", "80 bpm"), ("strings", "major", "drums")}

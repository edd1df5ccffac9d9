"""Presets (/v1/presets) and per-owner defaults (/v1/me/defaults), and how a generation request is filled in
from them: request, then preset, then defaults, then the model (no worker: the rows show what was asked)."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.api_helpers import api_client, api_settings, bearer_for


@pytest.fixture
async def client(database, owner_conn, empty_tables, tmp_path):
    owner_conn.execute("TRUNCATE presets, generation_defaults")
    owner_conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version, is_default) "
        "VALUES ('m', 'm', 'local', '1', true), ('other', 'other', 'local', '1', false)"
    )
    async with api_client(database, api_settings(database, tmp_path), worker=False) as client:
        client.alice = await bearer_for(client, "alice", "creator")
        client.bob = await bearer_for(client, "bob", "creator")
        client.reader = await bearer_for(client, "rita", "reader")
        client.admin = await bearer_for(client, "root", "admin")
        yield client


async def create(client, headers, **body) -> dict:
    response = await client.post("/v1/presets", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def rows(owner_conn, ids: list[str]) -> list[tuple]:
    """(prompt, steps, guidance_scale, model alias, visibility, seed) of these generations, by seed."""
    return owner_conn.execute(
        "SELECT g.params->>'prompt', (g.params->>'steps')::int, (g.params->>'guidance_scale')::float, m.alias, "
        "g.visibility, g.seed FROM generations g JOIN models m ON m.id = g.model_id WHERE g.id = ANY(%s) "
        "ORDER BY g.seed",
        ([uuid.UUID(i) for i in ids],),
    ).fetchall()


async def test_presets_are_listed_read_and_deleted_like_items(client):
    private = await create(client, client.alice, name="lofi", prompt="piano, minor, slow", steps=6)
    public = await create(client, client.alice, name="ambient", prompt="strings, major", visibility="public")
    assert private["owner"] == "alice" and private["steps"] == 6 and private["guidance_scale"] is None
    assert private["visibility"] == "private" and public["visibility"] == "public"

    mine = (await client.get("/v1/presets", headers=client.alice)).json()
    assert [p["name"] for p in mine["items"]] == ["ambient", "lofi"] and mine["next_cursor"] is None
    page = (await client.get("/v1/presets", params={"limit": 1}, headers=client.alice)).json()
    rest = await client.get("/v1/presets", params={"cursor": page["next_cursor"]}, headers=client.alice)
    assert [p["name"] for p in page["items"] + rest.json()["items"]] == ["ambient", "lofi"]
    theirs = (await client.get("/v1/presets", headers=client.bob)).json()["items"]
    assert [p["name"] for p in theirs] == ["ambient"]
    everyone = (await client.get("/v1/presets", params={"owner": "alice"}, headers=client.admin)).json()["items"]
    assert len(everyone) == 2
    assert (await client.get(f"/v1/presets/{private['id']}", headers=client.bob)).status_code == 404
    assert (await client.get(f"/v1/presets/{public['id']}", headers=client.reader)).json()["name"] == "ambient"

    assert (await client.delete(f"/v1/presets/{public['id']}", headers=client.bob)).status_code == 404
    assert (await client.post("/v1/presets", json={"name": "x"}, headers=client.reader)).status_code == 403
    assert (await client.delete(f"/v1/presets/{public['id']}", headers=client.alice)).status_code == 204
    assert (await client.get(f"/v1/presets/{public['id']}", headers=client.alice)).status_code == 404
    assert (await client.delete(f"/v1/presets/{private['id']}", headers=client.admin)).status_code == 204


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "p", "prompt": "kazoo, minor"}, 422, "prompt"),
        ({"name": "p", "model": "nope"}, 422, "model"),
        ({"name": str(uuid.uuid4())}, 422, "name"),
        ({"name": "  "}, 422, "name"),
        ({"name": "p", "steps": 0}, 400, "steps"),
        ({"name": "p", "visibility": "secret"}, 400, "visibility"),
        ({"name": "p", "seed": 3}, 400, "seed"),
        ({"prompt": "piano"}, 400, "name"),
    ],
)
async def test_bad_presets_are_refused_naming_the_field(client, owner_conn, body, status, field):
    response = await client.post("/v1/presets", json=body, headers=client.alice)
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert any(field in (e["field"] or "") or field in (e["message"] or "") for e in errors), errors
    assert owner_conn.execute("SELECT count(*) FROM presets").fetchone()[0] == 0


async def test_a_name_is_unique_per_owner(client):
    await create(client, client.alice, name="lofi")
    again = await client.post("/v1/presets", json={"name": "lofi"}, headers=client.alice)
    assert again.status_code == 409 and "lofi" in again.json()["detail"]
    await create(client, client.bob, name="lofi")  # another owner's namespace


async def test_defaults_are_read_replaced_and_cleared(client):
    empty = {"steps": None, "guidance_scale": None, "model": None, "batch_size": None, "visibility": None}
    assert (await client.get("/v1/me/defaults", headers=client.alice)).json() == empty
    wanted = {**empty, "steps": 7, "model": "other", "visibility": "public"}
    put = await client.put("/v1/me/defaults", json=wanted, headers=client.alice)
    assert put.status_code == 200 and put.json() == wanted
    assert (await client.get("/v1/me/defaults", headers=client.alice)).json() == wanted
    assert (await client.get("/v1/me/defaults", headers=client.bob)).json() == empty  # per owner
    unknown = await client.put("/v1/me/defaults", json={"model": "nope"}, headers=client.alice)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "model"
    assert (await client.put("/v1/me/defaults", json={}, headers=client.reader)).status_code == 403
    assert (await client.put("/v1/me/defaults", json={"batch_size": 2}, headers=client.alice)).status_code == 200
    assert (await client.get("/v1/me/defaults", headers=client.alice)).json() == {**empty, "batch_size": 2}


async def test_a_request_takes_left_out_fields_from_its_preset_then_the_defaults(client, owner_conn):
    defaults = {"steps": 9, "guidance_scale": 2.5, "batch_size": 2, "visibility": "public"}
    assert (await client.put("/v1/me/defaults", json=defaults, headers=client.alice)).status_code == 200
    preset = await create(client, client.alice, name="p", prompt="piano, minor", steps=5, model="other")

    by_name = await client.post("/v1/generations", json={"preset": "p", "seed": 1}, headers=client.alice)
    assert by_name.status_code == 202, by_name.text
    assert rows(owner_conn, by_name.json()["ids"]) == [
        ("piano, minor", 5, 2.5, "other", "public", 1),  # preset: prompt, steps, model; defaults: the rest
        ("piano, minor", 5, 2.5, "other", "public", 2),
    ]
    explicit = {"preset": preset["id"], "seed": 7, "prompt": "guitar, major", "steps": 3, "batch_size": 1}
    overridden = await client.post("/v1/generations", json={**explicit, "visibility": "private"}, headers=client.alice)
    assert rows(owner_conn, overridden.json()["ids"]) == [("guitar, major", 3, 2.5, "other", "private", 7)]

    plain = await client.post("/v1/generations", json={"prompt": "drums", "seed": 20}, headers=client.alice)
    assert rows(owner_conn, plain.json()["ids"]) == [
        ("drums", 9, 2.5, "m", "public", 20),
        ("drums", 9, 2.5, "m", "public", 21),
    ]


async def test_other_owners_apply_public_presets_by_id_only(client, owner_conn):
    public = await create(client, client.alice, name="pub", prompt="piano", visibility="public", steps=4)
    private = await create(client, client.alice, name="priv", prompt="piano")
    used = await client.post("/v1/generations", json={"preset": public["id"], "seed": 1}, headers=client.bob)
    (_, steps, _, model, visibility, _) = rows(owner_conn, used.json()["ids"])[0]
    assert used.status_code == 202 and (steps, model, visibility) == (4, "m", "private")  # bob has no defaults
    for ref in (private["id"], "pub", "priv"):  # another's private preset; names are the caller's own
        refused = await client.post("/v1/generations", json={"preset": ref}, headers=client.bob)
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "preset", ref


async def test_a_request_without_a_prompt_anywhere_is_400_naming_prompt(client):
    await create(client, client.alice, name="no-prompt", steps=4)
    for body in ({"seed": 1}, {"preset": "no-prompt"}):
        response = await client.post("/v1/generations", json=body, headers=client.alice)
        assert response.status_code == 400 and response.json()["errors"][0]["field"] == "prompt", body

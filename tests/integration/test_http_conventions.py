"""HTTP conventions every route shares: unknown query parameters, NUL characters, OPTIONS."""

from __future__ import annotations

import pytest

from tests.integration.api_helpers import api_client, api_settings, bearer_for


@pytest.fixture
async def client(database, owner_conn, empty_tables, tmp_path):
    owner_conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version, is_default) "
        "VALUES ('demo', 'demo', 'local', 'v1', true)"
    )
    async with api_client(database, api_settings(database, tmp_path), worker=False) as client:
        client.reader = await bearer_for(client, "rita", "reader")
        client.admin = await bearer_for(client, "root", "admin")
        yield client


def field_of(response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return response.json()["errors"][0]["field"]


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/v1/generations", {"limt": 5}, "limt"),
        ("/v1/generations", {"status": "pending", "colour": "blue", "size": 1}, "colour"),
        ("/v1/me", {"verbose": 1}, "verbose"),
    ],
)
async def test_unknown_query_parameters_are_400_naming_them(client, url, params, field):
    response = await client.get(url, params=params, headers=client.reader)
    assert response.status_code == 400 and field_of(response) == field
    assert "this route takes" in response.json()["detail"]


async def test_nul_characters_are_400_naming_the_field(client):
    query = await client.get("/v1/generations", params={"model": "de\x00mo"}, headers=client.reader)
    assert query.status_code == 400 and field_of(query) == "model"
    body = {"vector": [1.0] * 512, "filter": {"tags_all": ["piano", "mi\x00nor"]}}
    search = await client.post("/v1/search", json=body, headers=client.reader)
    assert search.status_code == 400 and field_of(search) == "filter.tags_all[1]"
    key = await client.post(
        "/v1/search", json={"vector": [1.0] * 512, "filter": {"params": {"st\x00eps": {}}}}, headers=client.reader
    )
    assert key.status_code == 400 and field_of(key) == "filter.params.st\\x00eps"


@pytest.mark.parametrize("url", ["/v1/models", "/v1/models/demo", "/v1/generations"])
async def test_options_lists_the_methods_of_guarded_routes(client, url):
    response = await client.options(url, headers=client.admin)
    assert response.status_code == 204, response.text
    assert "OPTIONS" in response.headers["allow"]


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/v1/generations", {"prompt": "piano", "duration": 30}, "duration"),
        ("/v1/search", {"vector": [1.0] * 512, "filter": {"tags": ["piano"]}}, "filter.tags"),
        ("/v1/variants", {"ids": [], "colour": "blue"}, "colour"),
    ],
)
async def test_unknown_body_fields_are_named(client, url, body, field):
    response = await client.post(url, json=body, headers=client.admin)
    assert response.status_code == 400 and field_of(response) == field


async def test_the_audio_has_a_file_name_and_answers_304_to_its_etag(client, owner_conn):
    import io
    import uuid

    import numpy as np
    import soundfile as sf

    wav = io.BytesIO()
    sf.write(wav, np.zeros(800, dtype=np.float32), 8000, format="WAV")
    blob = client.app.state.store.put(wav.getvalue(), ".wav")
    generation_id = uuid.uuid4()
    owner_conn.execute(
        "INSERT INTO generations (id, owner, model_id, kind, status, visibility, tags, params) "
        "SELECT %s, 'rita', id, 'import', 'succeeded', 'private', '{}', '{}' FROM models LIMIT 1",
        (generation_id,),
    )
    owner_conn.execute(
        "INSERT INTO audio_assets (generation_id, uri, sha256, bytes, sample_rate, duration_seconds, format) "
        "VALUES (%s, %s, %s, %s, 8000, 0.1, 'wav')",
        (generation_id, blob.uri, blob.sha256, len(wav.getvalue())),
    )
    url = f"/v1/generations/{generation_id}/audio"
    first = await client.get(url, headers=client.reader)
    assert first.status_code == 200 and first.content == wav.getvalue()
    assert first.headers["content-disposition"] == f'inline; filename="soundalike-{generation_id}.wav"'
    again = await client.get(url, headers={**client.reader, "If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == first.headers["etag"]
    flac = await client.get(
        url, headers={**client.reader, "If-None-Match": first.headers["etag"], "Accept": "audio/flac"}
    )
    assert flac.status_code == 200 and flac.headers["content-type"] == "audio/flac"  # another representation


async def test_the_rate_limit_says_which_limit_and_when_to_retry(database, empty_tables, tmp_path):
    from service.settings import ServerSettings

    settings = api_settings(database, tmp_path)
    settings.server = ServerSettings(rate_limit_per_minute=2)
    async with api_client(database, settings, worker=False) as client:
        key = await bearer_for(client, "rita", "reader")
        statuses = [(await client.get("/v1/me", headers=key)).status_code for _ in range(3)]
        limited = await client.get("/v1/me", headers=key)
    assert statuses[:2] == [200, 200] and limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert "2 requests per minute" in limited.json()["detail"]
    assert limited.headers["content-type"].startswith("application/problem+json")


async def test_many_statuses_in_one_request_and_admins_list_any_owner(client, owner_conn):
    import uuid

    rows = {
        (owner, visibility, status): uuid.uuid4()
        for owner, visibility, status in [
            ("rita", "private", "pending"),
            ("rita", "private", "succeeded"),
            ("bob", "private", "failed"),
            ("bob", "public", "running"),
        ]
    }
    for (owner, visibility, status), generation_id in rows.items():
        owner_conn.execute(
            "INSERT INTO generations (id, owner, model_id, kind, status, visibility, tags, params) "
            "SELECT %s, %s, id, 'text2music', %s, %s, '{}', '{}' FROM models LIMIT 1",
            (generation_id, owner, status, visibility),
        )
    everything = [str(g) for g in rows.values()]
    polled = await client.get("/v1/generations", params={"ids": everything, "limit": 100}, headers=client.reader)
    assert polled.status_code == 200, polled.text
    seen = {item["id"]: item["status"] for item in polled.json()["items"]}
    assert seen == {str(g): status for (owner, vis, status), g in rows.items() if owner == "rita" or vis == "public"}
    refused = await client.get("/v1/generations", params={"owner": "bob"}, headers=client.reader)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    listed = await client.get("/v1/generations", params={"owner": "bob"}, headers=client.admin)
    assert {item["id"] for item in listed.json()["items"]} == {str(g) for (o, *_), g in rows.items() if o == "bob"}

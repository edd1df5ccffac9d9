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

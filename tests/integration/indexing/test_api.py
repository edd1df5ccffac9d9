"""GET /v1/clusters, /v1/clusters/{id}, /v1/map: answers, pagination, visibility, problems."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from indexing.clustering import cluster_model
from service.app import create_app
from tests.integration.indexing.conftest import set_generation
from tests.integration.test_auth import bearer, issue


@pytest.fixture
async def clustered(database, app_conn, demo, index_dir):
    return cluster_model(database.app_url, index_dir, demo, k=4, nredo=3)


@pytest.fixture
async def client(settings, database, clustered):
    async with AsyncTestClient(create_app(database.app_url, settings)) as client:
        yield client


@pytest.fixture
async def keys(client, settings):
    return {
        who: bearer((await issue(client, settings, who, role)).key)
        for who, role in (("alice", "creator"), ("zed", "reader"), ("root", "admin"))
    }


def expected_visible(app_conn, owner: str | None) -> set[int]:
    where = "" if owner is None else "AND (g.visibility = 'public' OR g.owner = %(owner)s)"
    rows = app_conn.execute(
        "SELECT l.id FROM latent_embeddings l JOIN generations g ON g.id = l.generation_id "
        f"WHERE g.deleted_at IS NULL AND g.archived_at IS NULL {where}",
        {"owner": owner},
    )
    return {r[0] for r in rows}


async def all_pages(client, url: str, key, field: str, limit: int, **params) -> list[dict]:
    items, cursor = [], {}
    while True:
        response = await client.get(url, params={**params, "limit": limit, **cursor}, headers=key)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page[field]
        assert len(page[field]) <= limit
        if page["next_cursor"] is None:
            return items
        cursor = {"cursor": page["next_cursor"]}


async def test_clusters_listing(client, keys, clustered):
    response = await client.get("/v1/clusters", params={"model": "demo"}, headers=keys["zed"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "demo" and body["run"]["id"] == clustered.run_id and body["run"]["active"]
    assert body["run"]["k"] == 4 and body["run"]["n_points"] == 300
    assert [c["size"] for c in body["clusters"]] == clustered.sizes
    assert all(c["medoid"] is not None and c["medoid"]["score"] > 0.5 for c in body["clusters"])


async def test_clusters_carry_their_most_frequent_tags(client, keys, app_conn, clustered):
    admin = (await client.get("/v1/clusters", params={"model": "demo"}, headers=keys["root"])).json()
    reader = (await client.get("/v1/clusters", params={"model": "demo"}, headers=keys["zed"])).json()
    for everything, visible in zip(admin["clusters"], reader["clusters"], strict=True):
        counts = [t["count"] for t in everything["top_tags"]]
        assert 1 <= len(counts) <= 5 and counts == sorted(counts, reverse=True) and sum(counts) <= everything["size"]
        assert all(t["tag"].startswith("demo-cluster-") for t in everything["top_tags"])
        overall = {t["tag"]: t["count"] for t in everything["top_tags"]}
        assert all(t["count"] <= overall.get(t["tag"], t["count"]) for t in visible["top_tags"])  # visible only
    rows = app_conn.execute(
        "SELECT a.cluster_id, g.tags[1], count(*) FROM cluster_assignments a "
        "JOIN latent_embeddings l ON l.id = a.latent_id JOIN generations g ON g.id = l.generation_id "
        "WHERE a.run_id = %s AND g.deleted_at IS NULL AND g.archived_at IS NULL GROUP BY 1, 2",
        (clustered.run_id,),
    ).fetchall()
    top = {c["id"]: c["top_tags"][0] for c in admin["clusters"]}
    for cluster_id, first in top.items():
        assert first["count"] == max(n for c, _, n in rows if c == cluster_id)


async def test_map_pages_cover_exactly_the_visible_points(client, keys, app_conn):
    for who, owner in (("alice", "alice"), ("zed", "zed"), ("root", None)):
        points = await all_pages(client, "/v1/map", keys[who], "points", limit=70, model="demo")
        ids = [p["latent_id"] for p in points]
        assert len(ids) == len(set(ids)) and set(ids) == expected_visible(app_conn, owner), who
    assert 0 < len(expected_visible(app_conn, "zed")) < len(expected_visible(app_conn, "alice")) < 300


async def test_cluster_members_are_visible_live_items_only(client, keys, app_conn, clustered):
    listing = (await client.get("/v1/clusters", params={"model": "demo"}, headers=keys["alice"])).json()
    visible = expected_visible(app_conn, "alice")
    seen = set()
    for cluster in listing["clusters"]:
        members = await all_pages(client, f"/v1/clusters/{cluster['id']}", keys["alice"], "members", limit=25)
        seen |= {m["latent_id"] for m in members}
        assert cluster["medoid"]["latent_id"] == max(members, key=lambda m: m["score"])["latent_id"]
    assert seen == visible

    victim = min(visible)
    set_generation(app_conn, victim, "deleted_at")  # soft-deleted after clustering: gone from every answer
    points = await all_pages(client, "/v1/map", keys["root"], "points", limit=1000, model="demo")
    assert victim not in {p["latent_id"] for p in points}


async def test_problems(client, keys):
    missing = await client.get("/v1/clusters", headers=keys["zed"])
    assert missing.status_code == 400 and "model" in missing.text
    unknown = await client.get("/v1/map", params={"model": "nope"}, headers=keys["zed"])
    assert unknown.status_code == 404 and "unknown model alias 'nope'" in unknown.json()["detail"]
    assert unknown.headers["content-type"].startswith("application/problem+json")
    bad_limit = await client.get("/v1/map", params={"model": "demo", "limit": 0}, headers=keys["zed"])
    assert bad_limit.status_code == 400 and bad_limit.json()["errors"][0]["field"] == "limit"
    assert (await client.get("/v1/clusters/999999", headers=keys["zed"])).status_code == 404
    assert (await client.get("/v1/clusters", params={"model": "demo"})).status_code == 401


async def test_model_without_a_run_is_404(client, keys, app_conn):
    from indexing.demo import ensure_model

    ensure_model(app_conn, "fresh")
    response = await client.get("/v1/clusters", params={"model": "fresh"}, headers=keys["zed"])
    assert response.status_code == 404 and "soundalike index cluster" in response.json()["detail"]


@pytest.mark.parametrize(
    ("url", "params", "field", "status"),
    [
        ("/v1/map", {"model": "demo", "after": 0}, "after", 400),  # the old vocabulary is named, not ignored
        ("/v1/map", {"model": "demo", "cursor": "not-ours"}, "cursor", 422),
        ("/v1/clusters/1", {"cursor": "eyJhZnRlciI6IC0xfQ"}, "cursor", 422),  # {"after": -1}
        ("/v1/clusters", {"model": "demo\x00"}, "model", 400),  # PostgreSQL text cannot hold NUL
        ("/v1/clusters/99999999999999999999", {}, "cluster_id", 400),  # beyond bigint
    ],
)
async def test_bad_pagination_and_parameters_are_4xx_naming_them(client, keys, url, params, field, status):
    response = await client.get(url, params=params, headers=keys["zed"])
    assert response.status_code == status, response.text
    assert response.json()["errors"][0]["field"] == field

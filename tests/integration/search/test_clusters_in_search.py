"""Clusters inside search and variants: the cluster-id filter, group_by=cluster with group_size, and variants
batches sourced from a cluster; truth from the assignments the real clustering run wrote back."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest

from indexing.clustering import cluster_model
from indexing.source import ModelRef
from tests.integration.api_helpers import api_client, api_settings, bearer_for
from tests.integration.search.conftest import exact_ids, visible_to


@pytest.fixture
async def client(database, catalogue, tmp_path, owner_conn):
    model = ModelRef(catalogue.model_a, "tiny", 512)
    run = cluster_model(database.app_url, tmp_path / "index", model, k=6, nredo=2)
    settings = api_settings(database, tmp_path, max_variants_per_batch=40, variant_chunk_size=4)
    async with api_client(database, settings, worker=False) as client:
        client.alice = await bearer_for(client, "alice", "creator")
        client.catalogue = catalogue
        client.run_id = run.run_id
        client.members = members_by_cluster(owner_conn, run.run_id)
        yield client


def members_by_cluster(owner_conn, run_id: int) -> dict[int, tuple[int, list[uuid.UUID]]]:
    """cluster id -> (label, generation ids most central first), from the run's assignments."""
    rows = owner_conn.execute(
        "SELECT c.id, c.label, l.generation_id FROM cluster_assignments a JOIN clusters c ON c.id = a.cluster_id "
        "JOIN latent_embeddings l ON l.id = a.latent_id WHERE a.run_id = %s ORDER BY a.score DESC, a.latent_id",
        (run_id,),
    ).fetchall()
    out: dict[int, tuple[int, list[uuid.UUID]]] = {}
    for cluster_id, label, generation_id in rows:
        out.setdefault(cluster_id, (label, []))[1].append(generation_id)
    return out


async def search(client, status=200, **body) -> dict:
    response = await client.post("/v1/search", json=body, headers=client.alice)
    assert response.status_code == status, response.text
    return response.json()


def largest_cluster(client) -> tuple[int, set[uuid.UUID]]:
    cluster_id, (_, members) = max(client.members.items(), key=lambda entry: len(entry[1][1]))
    return cluster_id, set(members)


async def test_cluster_filter_returns_the_exact_nearest_members(client):
    cluster_id, members = largest_cluster(client)
    visible = visible_to(client.catalogue.items, "alice")
    inside = [i for i in visible if i.id in members]
    query = client.catalogue.items[7].vector
    body = await search(client, vector=query.tolist(), limit=20, filter={"cluster_id": cluster_id})
    assert [uuid.UUID(item["id"]) for item in body["items"]] == exact_ids(inside, query, 20)


async def test_group_by_cluster_gives_groups_of_the_nearest_hits(client):
    visible = visible_to(client.catalogue.items, "alice")
    query = client.catalogue.items[11].vector
    cluster_of = {gid: cid for cid, (_, members) in client.members.items() for gid in members}
    body = await search(client, vector=query.tolist(), limit=3, group_by="cluster", group_size=2)

    expected: dict[int, list[uuid.UUID]] = defaultdict(list)
    for generation_id in exact_ids(visible, query, len(visible)):
        group = expected[cluster_of[generation_id]]
        if len(group) < 2:
            group.append(generation_id)
    first_three = list(expected)[:3]
    assert [g["cluster_id"] for g in body["groups"]] == first_three
    for group in body["groups"]:
        assert group["label"] == client.members[group["cluster_id"]][0]
        assert [uuid.UUID(item["id"]) for item in group["items"]] == expected[group["cluster_id"]]
    assert [item["id"] for item in body["items"]] == [i["id"] for g in body["groups"] for i in g["items"]]


async def test_items_newer_than_the_run_form_an_unclustered_group(client, owner_conn):
    source = client.catalogue.items[3]
    fresh = owner_conn.execute(
        "INSERT INTO generations (owner, model_id, kind, status, visibility) VALUES ('alice', %s, 'import', "
        "'succeeded', 'private') RETURNING id",
        (client.catalogue.model_a,),
    ).fetchone()[0]
    owner_conn.execute(
        "INSERT INTO latent_embeddings (generation_id, model_id, embedding) VALUES (%s, %s, %s::float4[]::vector)",
        (fresh, client.catalogue.model_a, (source.vector * 1.0001).tolist()),
    )
    body = await search(client, vector=source.vector.tolist(), limit=2, group_by="cluster", group_size=1)
    unclustered = [g for g in body["groups"] if g["cluster_id"] is None]
    assert len(unclustered) == 1 and unclustered[0]["label"] is None
    assert unclustered[0]["items"][0]["id"] == str(fresh)


async def test_variants_of_a_cluster_take_its_most_central_visible_members(client, owner_conn):
    cluster_id, members = largest_cluster(client)
    visible = {i.id for i in visible_to(client.catalogue.items, "alice")}
    central = [gid for gid in client.members[cluster_id][1] if gid in visible][:5]
    response = await client.post(
        "/v1/variants",
        headers=client.alice,
        json={"cluster_id": cluster_id, "cluster_limit": 5, "n_per_source": 2, "seed": 1},
    )
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["total"] == 10 and batch["params"]["cluster_id"] == cluster_id
    assert batch["params"]["sources"] == [str(gid) for gid in central]
    parents = owner_conn.execute(
        "SELECT parent_id, count(*) FROM generations WHERE batch_id = %s GROUP BY parent_id", (batch["id"],)
    ).fetchall()
    assert {parent: n for parent, n in parents} == dict.fromkeys(central, 2)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"filter": {"cluster_id": 987654}}, 404, None),
        ({"group_by": "cluster", "group_size": 11}, 422, "group_size"),
        ({"group_by": "cluster", "group_size": 0}, 422, "group_size"),
        ({"group_by": "cluster", "diversity": 0.5}, 422, "group_by"),
        ({"group_by": "cluster", "cursor": "abc"}, 422, "group_by"),
        ({"group_by": "artist"}, 400, "group_by"),
    ],
)
async def test_bad_cluster_searches(client, body, status, field):
    problem = await search(client, status, vector=client.catalogue.items[0].vector.tolist(), **body)
    if field is not None:
        assert field in str(problem)


async def test_a_cluster_of_another_model_or_no_run_is_refused(client):
    cluster_id, _ = largest_cluster(client)
    twin = client.catalogue.twins[0]
    problem = await search(client, 422, generation_id=str(twin.id), filter={"cluster_id": cluster_id})
    assert "filter.cluster_id" in str(problem) and "another model" in problem["detail"]
    problem = await search(client, 409, generation_id=str(twin.id), group_by="cluster")
    assert "soundalike index cluster" in problem["detail"]


async def test_bad_cluster_variants_store_nothing(client, owner_conn):
    cluster_id, members = largest_cluster(client)
    before = owner_conn.execute("SELECT count(*) FROM generations").fetchone()[0]
    cases = [
        ({"cluster_id": 987654}, 404),
        ({"cluster_id": cluster_id, "ids": [str(next(iter(members)))]}, 422),
        ({"cluster_id": cluster_id, "n_per_source": 16}, 422),  # every member x 16 is over the cap of 40
        ({"cluster_id": cluster_id, "cluster_limit": 0}, 400),
    ]
    for body, status in cases:
        response = await client.post("/v1/variants", headers=client.alice, json=body)
        assert response.status_code == status, (body, response.text)
    over = (await client.post("/v1/variants", headers=client.alice, json=cases[2][0])).json()
    assert "cluster_limit" in over["detail"]
    assert owner_conn.execute("SELECT count(*) FROM generations").fetchone()[0] == before

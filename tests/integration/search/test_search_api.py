"""POST /v1/search against the real database: truth from an exact scan, visibility, model isolation, filters,
cursors, thresholds, examples, MMR, and every bad input answered 4xx naming the field."""

from __future__ import annotations

import base64
import json
import math
import uuid

import numpy as np
import pytest

from tests.integration.api_helpers import api_client, api_settings, bearer_for
from tests.integration.search.conftest import exact_ids, visible_to


@pytest.fixture
async def client(database, catalogue, tmp_path):
    async with api_client(database, api_settings(database, tmp_path), worker=False) as client:
        client.alice = await bearer_for(client, "alice", "reader")
        client.bob = await bearer_for(client, "bob", "reader")
        client.admin = await bearer_for(client, "root", "admin")
        client.catalogue = catalogue
        yield client


async def search(client, headers, status=200, **body) -> dict:
    response = await client.post("/v1/search", json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


def ids(body) -> list[uuid.UUID]:
    return [uuid.UUID(item["id"]) for item in body["items"]]


async def test_by_id_returns_the_exact_nearest_visible_items(client):
    items = client.catalogue.items
    source = next(i for i in items if i.owner == "alice" and not i.deleted)
    body = await search(client, client.alice, generation_id=str(source.id), limit=10)
    truth = exact_ids(visible_to(items, "alice"), source.vector, 10, exclude=[source.id])
    assert ids(body) == truth
    assert body["model"] == "tiny"
    first = body["items"][0]
    assert math.isclose(first["similarity"], 1 - first["distance"], abs_tol=1e-6)
    assert first["url"] == f"/v1/generations/{first['id']}" and first["audio_url"] is None
    similarities = [item["similarity"] for item in body["items"]]
    assert similarities == sorted(similarities, reverse=True)


async def test_by_vector_sees_only_own_and_public_and_never_deleted(client):
    items = client.catalogue.items
    query = items[3].vector
    for headers, owner, admin in (
        (client.alice, "alice", False),
        (client.bob, "bob", False),
        (client.admin, "root", True),
    ):
        body = await search(client, headers, vector=query.tolist(), limit=50)
        assert ids(body) == exact_ids(visible_to(items, owner, admin), query, 50)
        by_id = {i.id: i for i in items}
        for found in ids(body):
            item = by_id[found]
            assert not item.deleted
            assert admin or item.owner == owner or item.visibility == "public"


async def test_models_never_mix(client):
    """Model-B twins are nearly identical to model-A items, yet a model-A search never returns them and a
    model-B search returns only them."""
    cat = client.catalogue
    query = cat.items[0].vector
    body_a = await search(client, client.admin, vector=query.tolist(), limit=100)
    assert not set(ids(body_a)) & {t.id for t in cat.twins}
    body_b = await search(client, client.admin, vector=query.tolist(), limit=5, model="other")
    assert body_b["model"] == "other" and ids(body_b) == exact_ids(cat.twins, query, 5)
    twin_of_0 = cat.twins[0]
    by_twin = await search(client, client.admin, generation_id=str(twin_of_0.id), limit=20)
    assert set(ids(by_twin)) <= {t.id for t in cat.twins}
    mismatch = await search(client, client.admin, 422, generation_id=str(twin_of_0.id), model="tiny")
    assert mismatch["errors"][0]["field"] == "model"


async def test_filters(client):
    items = [i for i in visible_to(client.catalogue.items, "alice")]
    query = items[0].vector
    cases = [
        ({"tags_all": ["piano", "minor"]}, lambda i: {"piano", "minor"} <= set(i.tags)),
        ({"tags_any": ["minor"]}, lambda i: "minor" in i.tags),
        ({"kind": "import"}, lambda i: i.kind == "import"),
        ({"mine": True}, lambda i: i.owner == "alice"),
        ({"visibility": "public"}, lambda i: i.visibility == "public"),
        ({"tempo": {"gte": 80, "lte": 100}}, lambda i: 80 <= int(i.tags[2].split()[0]) <= 100),
        ({"params": {"steps": {"gte": 10, "lte": 12}}}, lambda i: 10 <= i.params["steps"] <= 12),
        ({"exclude_ids": [str(items[1].id), str(items[2].id)]}, lambda i: i.id not in (items[1].id, items[2].id)),
    ]
    for filters, keep in cases:
        body = await search(client, client.alice, vector=query.tolist(), limit=15, filter=filters)
        expected = exact_ids([i for i in items if keep(i)], query, 15)
        assert ids(body) == expected, filters
        assert len(expected) > 0


async def test_created_range(client, owner_conn):
    cat = client.catalogue
    early = [i for i in visible_to(cat.items, "alice")][:40]
    owner_conn.execute("UPDATE generations SET created_at = '2020-01-01' WHERE id = ANY(%s)", ([i.id for i in early],))
    query = early[5].vector
    body = await search(
        client, client.alice, vector=query.tolist(), limit=10, filter={"created_before": "2021-01-01T00:00:00Z"}
    )
    assert ids(body) == exact_ids(early, query, 10)
    after = await search(
        client, client.alice, vector=query.tolist(), limit=100, filter={"created_after": "2021-01-01T00:00:00Z"}
    )
    assert not set(ids(after)) & {i.id for i in early}


async def test_cursor_pages_continue_the_exact_order(client):
    items = visible_to(client.catalogue.items, "alice")
    query = items[7].vector
    truth = exact_ids(items, query, 25)
    seen, cursor = [], None
    while len(seen) < 25:
        body = await search(
            client, client.alice, vector=query.tolist(), limit=10, **({"cursor": cursor} if cursor else {})
        )
        seen += ids(body)
        cursor = body["next_cursor"]
        assert cursor
    assert seen[:25] == truth


async def test_score_threshold(client):
    items = visible_to(client.catalogue.items, "alice")
    query = items[4].vector
    full = await search(client, client.alice, vector=query.tolist(), limit=100)
    cut = full["items"][20]["similarity"]
    body = await search(client, client.alice, vector=query.tolist(), limit=100, score_threshold=cut)
    assert [i["similarity"] for i in body["items"]] == [
        s["similarity"] for s in full["items"] if s["similarity"] >= cut
    ]
    assert len(body["items"]) >= 21 and body["next_cursor"] is None


async def test_average_vector_examples(client):
    items = visible_to(client.catalogue.items, "alice")
    pos, neg = items[:2], items[2:3]
    unit = [i.vector / np.linalg.norm(i.vector) for i in pos]
    expected_query = 2 * np.mean(unit, axis=0) - neg[0].vector / np.linalg.norm(neg[0].vector)
    body = await search(client, client.alice, positive=[str(i.id) for i in pos], negative=[str(neg[0].id)], limit=10)
    assert ids(body) == exact_ids(items, expected_query, 10, exclude=[i.id for i in pos + neg])


async def test_best_score_prefers_items_closer_to_positives(client):
    items = visible_to(client.catalogue.items, "alice")
    pos, neg = items[0], items[1]
    body = await search(
        client, client.alice, positive=[str(pos.id)], negative=[str(neg.id)], strategy="best_score", limit=20
    )
    assert len(body["items"]) == 20 and not {pos.id, neg.id} & set(ids(body))
    by_id = {i.id: i for i in items}
    for item in body["items"]:
        v = by_id[uuid.UUID(item["id"])].vector
        sp, sn = (float(v @ x.vector / np.linalg.norm(v) / np.linalg.norm(x.vector)) for x in (pos, neg))
        expected = sp if sp > sn else -(sn**2)
        assert math.isclose(item["score"], expected, abs_tol=1e-5)
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)


async def test_mmr_changes_the_set_as_diversity_grows(client):
    items = visible_to(client.catalogue.items, "alice")
    query = items[0].vector
    plain = ids(await search(client, client.alice, vector=query.tolist(), limit=10))
    relevance_only = ids(await search(client, client.alice, vector=query.tolist(), limit=10, diversity=0.0))
    assert relevance_only == plain
    mixed = await search(client, client.alice, vector=query.tolist(), limit=10, diversity=0.7)
    assert set(ids(mixed)) != set(plain) and len(mixed["items"]) == 10

    def spread(found):
        by_id = {i.id: i.vector for i in items}
        v = np.stack([by_id[i] for i in found])
        sims = v @ v.T
        return float(sims[np.triu_indices(len(found), 1)].mean())

    assert spread(ids(mixed)) < spread(plain)


async def test_exact_scan_is_admin_only_and_matches_truth(client):
    items = client.catalogue.items
    query = items[9].vector
    body = await search(client, client.admin, vector=query.tolist(), limit=30, exact=True)
    assert ids(body) == exact_ids(visible_to(items, "root", admin=True), query, 30)
    denied = await search(client, client.alice, 403, vector=query.tolist(), exact=True)
    assert "admin" in denied["detail"]


async def test_unknown_and_invisible_ids_are_404(client):
    private_of_bob = next(
        i for i in client.catalogue.items if i.owner == "bob" and i.visibility == "private" and not i.deleted
    )
    deleted = next(i for i in client.catalogue.items if i.deleted and i.owner == "alice")
    for missing in (uuid.uuid4(), private_of_bob.id, deleted.id):
        await search(client, client.alice, 404, generation_id=str(missing))
        await search(client, client.alice, 404, positive=[str(missing)])


BAD = [
    ({}, "query"),
    ({"vector": [0.1] * 512, "generation_id": str(uuid.uuid4())}, "query"),
    ({"vector": [0.1] * 511}, "vector"),
    ({"vector": [0.0] * 512}, "vector"),
    ({"vector": [float("nan")] + [0.1] * 511}, "vector"),
    ({"vector": [float("inf")] + [0.1] * 511}, "vector"),
    ({"vector": [0.1] * 512, "limit": 0}, "limit"),
    ({"vector": [0.1] * 512, "limit": 101}, "limit"),
    ({"vector": [0.1] * 512, "diversity": 1.5}, "diversity"),
    ({"vector": [0.1] * 512, "score_threshold": 2}, "score_threshold"),
    ({"vector": [0.1] * 512, "cursor": "garbage!"}, "cursor"),
    ({"vector": [0.1] * 512, "model": "nope"}, "model"),
    ({"negative": [str(uuid.uuid4())]}, "positive"),
]


@pytest.mark.parametrize(("body", "field"), BAD)
async def test_bad_input_names_the_field(client, body, field):
    # NaN and Infinity as JavaScript and Python's json write them (not strict JSON, read leniently on purpose)
    raw = json.dumps(body).encode()
    response = await client.post(
        "/v1/search", content=raw, headers={**client.alice, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"] == field


async def test_overlapping_examples_and_wrong_types(client):
    item = visible_to(client.catalogue.items, "alice")[0]
    overlap = await search(client, client.alice, 422, positive=[str(item.id)], negative=[str(item.id)])
    assert overlap["errors"][0]["field"] == "negative"
    typed = await search(client, client.alice, 400, vector=[0.1] * 512, limit="ten")
    assert typed["errors"][0]["field"] == "limit"
    unknown = await search(client, client.alice, 400, vector=[0.1] * 512, colour="blue")
    assert "colour" in unknown["detail"]


async def test_by_uploaded_audio_encodes_with_the_searched_model(client, tiny_model):
    from tests.integration.test_imports import clip_bytes

    data, mono, rate = clip_bytes(seconds=3)
    expected_query = tiny_model["pipeline"].encode(mono, rate)
    files = {"file": ("probe.wav", data, "audio/wav")}
    response = await client.post(
        "/v1/search", files=files, data={"query": json.dumps({"limit": 7})}, headers=client.alice
    )
    assert response.status_code == 200, response.text
    assert ids(response.json()) == exact_ids(visible_to(client.catalogue.items, "alice"), expected_query, 7)

    both = await client.post(
        "/v1/search", files=files, data={"query": json.dumps({"vector": [0.1] * 512})}, headers=client.alice
    )
    assert both.status_code == 422 and both.json()["errors"][0]["field"] == "query"
    broken = await client.post("/v1/search", files={"file": ("x.wav", b"nope", "audio/wav")}, headers=client.alice)
    assert broken.status_code == 422 and broken.json()["errors"][0]["field"] == "file"


async def test_song_path_walks_the_great_circle_without_repeats(client):
    from service.domain.discovery.song_path import slerp

    items = visible_to(client.catalogue.items, "alice")
    start, end = items[0], items[-1]
    response = await client.get(
        "/v1/path", params={"from": str(start.id), "to": str(end.id), "steps": 6}, headers=client.alice
    )
    assert response.status_code == 200, response.text
    stops = response.json()["stops"]
    found = [uuid.UUID(s["generation"]["id"]) for s in stops]
    assert len(found) == 6 and found[0] == start.id and found[-1] == end.id and len(set(found)) == 6
    assert [s["position"] for s in stops] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    a, b = (v.vector / np.linalg.norm(v.vector) for v in (start, end))
    used = [start.id, end.id]
    for stop, expected_id in zip(stops[1:-1], found[1:-1], strict=True):
        expected = exact_ids(items, slerp(a, b, stop["position"]), 1, exclude=used)[0]
        assert expected_id == expected
        used.append(expected)


async def test_song_path_errors(client):
    items = visible_to(client.catalogue.items, "alice")
    twin = client.catalogue.twins[0]

    async def path(status, **params):
        response = await client.get("/v1/path", params=params, headers=client.alice)
        assert response.status_code == status, response.text
        return response.json()

    across = await path(422, **{"from": str(items[0].id), "to": str(twin.id)})
    assert across["errors"][0]["field"] == "to" and "model" in across["detail"]
    assert (await path(422, **{"from": str(items[0].id), "to": str(items[1].id), "steps": 2}))["errors"][0][
        "field"
    ] == "steps"
    assert (await path(422, **{"from": str(items[0].id), "to": str(items[0].id)}))["errors"][0]["field"] == "to"
    await path(404, **{"from": str(items[0].id), "to": str(uuid.uuid4())})
    await path(400, **{"from": "not-a-uuid", "to": str(items[0].id)})


# -- query vectors at the edges of float32; cursors bound to their search ---------------------------------


@pytest.mark.parametrize("value", [1e39, -3.5e38, 1e300])
async def test_a_value_beyond_float32_is_422_naming_vector(client, value):
    vector = [0.1] * 512
    vector[7] = value
    problem = await search(client, client.alice, 422, vector=vector)
    assert problem["errors"][0]["field"] == "vector"
    assert "vector[7]" in problem["detail"] and "float32" in problem["detail"]


@pytest.mark.parametrize("scale", [1e37, 1e-40], ids=["huge", "tiny"])
async def test_huge_and_tiny_vectors_find_what_their_direction_finds(client, scale):
    """Cosine ignores a vector's length; float32 sums over such values overflow or vanish unless it is scaled."""
    items = visible_to(client.catalogue.items, "alice")
    query = items[3].vector.astype(np.float64)
    body = await search(client, client.alice, vector=(query * scale).tolist(), limit=10)
    assert ids(body) == exact_ids(items, query, 10)
    assert all(np.isfinite(item["distance"]) for item in body["items"])


async def first_page(client, **body) -> str:
    cursor = (await search(client, client.alice, limit=5, **body))["next_cursor"]
    assert cursor
    return cursor


async def test_a_cursor_pages_only_the_search_that_handed_it_out(client):
    items = visible_to(client.catalogue.items, "alice")
    one, other = items[3].vector.tolist(), items[40].vector.tolist()
    cursor = await first_page(client, vector=one)

    assert (await search(client, client.alice, vector=one, limit=5, cursor=cursor))["items"]  # same search: fine
    foreign = [
        {"vector": other},
        {"vector": one, "filter": {"tags_any": ["piano"]}},
        {"vector": one, "score_threshold": 0.1},
        {"generation_id": str(items[3].id)},
    ]
    for body in foreign:
        problem = await search(client, client.alice, 422, limit=5, cursor=cursor, **body)
        assert problem["errors"][0]["field"] == "cursor"
        assert "another search" in problem["detail"]


async def test_a_cursor_of_the_old_unbound_format_is_refused(client):
    unbound = base64.urlsafe_b64encode(b"[0.1, 5]").decode().rstrip("=")
    problem = await search(client, client.alice, 422, vector=[0.1] * 512, cursor=unbound)
    assert problem["errors"][0]["field"] == "cursor"

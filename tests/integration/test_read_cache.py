"""The read cache (service.domain.cache) in front of presets by id and an item's public neighbours: two API apps
(as two processes) share one real redis-server; a write through one forgets what the other had cached, and a
neighbour list never shows an item its reader cannot see."""

from __future__ import annotations

import contextlib
import uuid

import httpx
import numpy as np
import pytest
import redis.asyncio as redis

from service.client import AsyncClient
from service.domain.cache.store import ReadCache, Space
from tests.integration.api_helpers import bearer_for
from tests.integration.search.conftest import DIM, Item, insert
from tests.integration.test_shared_state import cluster_settings, two_processes


@contextlib.asynccontextmanager
async def deployment(database, tmp_path, redis_url: str | None):
    settings = cluster_settings(database, tmp_path, redis_url, per_minute=10_000)
    async with two_processes(database, settings) as (first, second):
        for client in (first, second):
            client.alice = await bearer_for(client, "alice", "creator")
            client.bob = await bearer_for(client, "bob", "creator")
        yield first, second, settings.cache.prefix


async def cached_entries(redis_url: str, prefix: str, space: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return await client.hlen(f"{prefix}cache:{{{space}}}")
    finally:
        await client.aclose()


@pytest.fixture
def catalogue(owner_conn, empty_tables) -> dict[str, uuid.UUID]:
    """One model; around alice's public ``source`` (by distance): bob's private ``secret`` (nearest), then
    public items ``near0..near3``; ``far`` last."""
    owner_conn.execute("TRUNCATE presets")
    model_id = owner_conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version, is_default) "
        "VALUES ('m', 'm', 'local', '1', true) RETURNING id"
    ).fetchone()[0]
    rng = np.random.default_rng(7)
    base = rng.standard_normal(DIM).astype(np.float32)
    noise = rng.standard_normal((7, DIM)).astype(np.float32)
    names = ["source", "secret", "near0", "near1", "near2", "near3", "far"]
    weights = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 3.0]
    owners = {"secret": ("bob", "private")}
    items = []
    for name, weight, row in zip(names, weights, noise, strict=True):
        vector = base + weight * np.linalg.norm(base) * row / np.linalg.norm(row)
        owner, visibility = owners.get(name, ("alice", "public"))
        items.append(Item(uuid.uuid4(), model_id, vector / np.linalg.norm(vector), owner, visibility, [name]))
    insert(owner_conn, items)
    return {name: item.id for name, item in zip(names, items, strict=True)}


def names_of(response, catalogue: dict[str, uuid.UUID]) -> list[str]:
    assert response.status_code == 200, response.text
    by_id = {str(v): k for k, v in catalogue.items()}
    return [by_id[item["id"]] for item in response.json()["items"]]


async def test_a_deleted_preset_is_gone_from_every_process_at_once(
    database, tmp_path, redis_url, owner_conn, catalogue
):
    async with deployment(database, tmp_path, redis_url) as (first, second, prefix):
        made = await first.post(
            "/v1/presets", json={"name": "ambient", "prompt": "harp", "visibility": "public"}, headers=first.alice
        )
        private = await first.post("/v1/presets", json={"name": "mine", "prompt": "harp"}, headers=first.alice)
        url, private_url = f"/v1/presets/{made.json()['id']}", f"/v1/presets/{private.json()['id']}"
        assert (await first.get(url, headers=first.bob)).json()["name"] == "ambient"
        assert (await first.get(private_url, headers=first.alice)).status_code == 200  # cached for alice ...
        assert (await second.get(private_url, headers=second.bob)).status_code == 404  # ... never shown to bob
        assert await cached_entries(redis_url, prefix, "presets") == 2
        owner_conn.execute("UPDATE presets SET description = 'behind the cache' WHERE name = 'ambient'")
        served = (await second.get(url, headers=second.bob)).json()  # the other process reads the shared entry
        generated = await second.post("/v1/generations", json={"preset": made.json()["id"]}, headers=second.bob)
        deleted = await first.delete(url, headers=first.alice)
        after = await second.get(url, headers=second.bob)
        applied = await second.post("/v1/generations", json={"preset": made.json()["id"]}, headers=second.bob)
    assert served["description"] is None  # from the cache, not the row
    assert generated.status_code == 202, generated.text
    assert deleted.status_code == 204 and after.status_code == 404
    assert applied.status_code == 422 and "preset" in applied.text


async def test_public_neighbours_are_shared_and_follow_visibility_writes(database, tmp_path, redis_url, catalogue):
    async with deployment(database, tmp_path, redis_url) as (first, second, prefix):
        url = f"/v1/generations/{catalogue['source']}/neighbours?limit=3"
        before = names_of(await first.get(url, headers=first.alice), catalogue)
        assert await cached_entries(redis_url, prefix, "neighbours") == 1
        as_bob = names_of(await second.get(url, headers=second.bob), catalogue)  # bob's own secret is not public
        made_public = await second.patch(
            f"/v1/generations/{catalogue['secret']}", json={"visibility": "public"}, headers=second.bob
        )
        with_secret = names_of(await first.get(url, headers=first.alice), catalogue)
        made_private = await first.patch(
            f"/v1/generations/{catalogue['secret']}", json={"visibility": "private"}, headers=first.bob
        )
        hidden_again = names_of(await second.get(url, headers=second.alice), catalogue)
        deleted = await second.delete(f"/v1/generations/{catalogue['near0']}", headers=second.alice)
        without_deleted = names_of(await first.get(url, headers=first.alice), catalogue)
    assert before == as_bob == ["near0", "near1", "near2"]
    assert made_public.status_code == 200 and with_secret == ["secret", "near0", "near1"]
    assert made_private.status_code == 200 and hidden_again == ["near0", "near1", "near2"]
    assert deleted.status_code == 204 and without_deleted == ["near1", "near2", "near3"]


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "in-process"])
async def test_a_cached_list_never_shows_what_a_write_elsewhere_hid(
    database, tmp_path, redis_url, owner_conn, catalogue, shared
):
    """Writes that bypass the API (a worker's lifecycle pass, another process without a shared cache) reach no
    invalidation: every cached list is checked against the rows before it is served."""
    async with deployment(database, tmp_path, redis_url if shared else None) as (first, second, _):
        url = f"/v1/generations/{catalogue['source']}/neighbours?limit=2"
        assert names_of(await first.get(url, headers=first.bob), catalogue) == ["near0", "near1"]
        owner_conn.execute("UPDATE generations SET visibility = 'private' WHERE id = %s", (catalogue["near0"],))
        owner_conn.execute("UPDATE generations SET archived_at = now() WHERE id = %s", (catalogue["near1"],))
        after = names_of(await first.get(url, headers=first.bob), catalogue)
        owner_conn.execute("UPDATE generations SET visibility = 'private' WHERE id = %s", (catalogue["source"],))
        source_hidden = await first.get(url, headers=first.bob)
        owner_sees = await first.get(url, headers=first.alice)
    assert after == ["near2", "near3"]
    assert source_hidden.status_code == 404 and owner_sees.status_code == 200


async def test_neighbours_of_an_unknown_item_and_a_bad_limit(database, tmp_path, catalogue):
    async with deployment(database, tmp_path, None) as (first, _, _):
        key = first.alice["Authorization"].removeprefix("Bearer ")
        transport = httpx.ASGITransport(first.app)
        async with AsyncClient("http://testserver.local", key, transport=transport) as client:
            through_client = await client.neighbours(catalogue["source"], limit=2)
        unknown = await first.get(f"/v1/generations/{uuid.uuid4()}/neighbours", headers=first.alice)
        secret = await first.get(f"/v1/generations/{catalogue['secret']}/neighbours", headers=first.alice)
        too_many = await first.get(f"/v1/generations/{catalogue['source']}/neighbours?limit=101", headers=first.alice)
    assert [hit.id for hit in through_client.items] == [catalogue["near0"], catalogue["near1"]]
    assert unknown.status_code == 404 and secret.status_code == 404
    assert too_many.status_code == 400 and "limit" in too_many.text


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "in-process"])
async def test_a_read_that_raced_a_write_does_not_store_its_stale_value(redis_url, shared):
    client = redis.Redis.from_url(redis_url) if shared else None
    cache = ReadCache.create(client, f"test-{uuid.uuid4().hex}:")
    space = Space("things", ttl=60)
    try:
        slow = await cache.backend.lookup(space, "a")  # a read misses and goes to the database ...
        await cache.forget(space, "a")  # ... meanwhile a write commits and forgets
        stale_kept = await cache.backend.store(space, "a", b"stale", slow.generation)
        fresh = await cache.fetch(space, "a", str, _value("fresh"))
        again = await cache.fetch(space, "a", str, _value("not computed: cached"))
        await cache.forget(space)
        gone = await cache.backend.lookup(space, "a")
    finally:
        if client is not None:
            await client.aclose()
    assert not stale_kept and fresh == again == "fresh" and gone.value is None


def _value(text: str):
    async def compute() -> str:
        return text

    return compute

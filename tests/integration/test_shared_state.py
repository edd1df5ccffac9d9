"""Several API processes, one Redis (SOUNDALIKE_CACHE_URL): one rate limit per key, one key cache that a
revocation empties for all of them at once; without the URL each process keeps its own (today's behaviour)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import redis.asyncio as redis
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.domain.access import api_keys, web_sessions
from service.domain.access.shared_state import RedisRateLimiter, SharedState
from service.settings import AuthSettings, CacheSettings, ServerSettings, Settings
from tests.integration.api_helpers import api_settings
from tests.integration.test_cli import _free_port, assert_one_line_error, external, soundalike

BASE_URL = "http://testserver.local"


def cluster_settings(database, tmp_path, redis_url: str | None, per_minute: int = 3) -> Settings:
    """Settings of every process of one deployment: its own key prefix in the shared server, a long key cache."""
    settings = api_settings(database, tmp_path)
    settings.server = ServerSettings(rate_limit_per_minute=per_minute)
    settings.auth = AuthSettings(key_cache_seconds=300)  # long: only a shared cache can make revocation immediate
    settings.cache = CacheSettings(url=redis_url, prefix=f"test-{uuid.uuid4().hex}:")
    return settings


@contextlib.asynccontextmanager
async def two_processes(database, settings: Settings):
    """Two API apps (as two processes would be) built from the same settings."""
    async with (
        AsyncTestClient(create_app(database.app_url, settings), base_url=BASE_URL, timeout=60) as first,
        AsyncTestClient(create_app(database.app_url, settings), base_url=BASE_URL, timeout=60) as second,
    ):
        yield first, second


async def new_key(client, owner: str) -> api_keys.IssuedKey:
    async with client.app.state.sessionmaker() as session:
        issued = await api_keys.create_key(session, client.app.state.settings.auth.secret, owner, "reader")
        await session.commit()
    return issued


def bearer(issued: api_keys.IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued.key}"}


async def test_two_processes_sharing_redis_count_one_rate_limit(database, empty_tables, tmp_path, redis_url):
    async with two_processes(database, cluster_settings(database, tmp_path, redis_url)) as (first, second):
        key = bearer(await new_key(first, "rita"))
        answers = [await client.get("/v1/me", headers=key) for client in (first, second, first, second, first)]
        other = await second.get("/v1/me", headers=bearer(await new_key(second, "sam")))  # limits are per key
        ready = (await first.get("/ready")).json()
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert "3 requests per minute" in answers[3].json()["detail"] and 1 <= int(answers[3].headers["retry-after"]) <= 60
    assert other.status_code == 200
    assert ready["cache"] == "redis"


async def test_without_a_cache_url_each_process_counts_its_own_limit(database, empty_tables, tmp_path):
    async with two_processes(database, cluster_settings(database, tmp_path, None)) as (first, second):
        key = bearer(await new_key(first, "rita"))
        on_first = [(await first.get("/v1/me", headers=key)).status_code for _ in range(4)]
        on_second = (await second.get("/v1/me", headers=key)).status_code
        ready = (await first.get("/ready")).json()
    assert on_first == [200, 200, 200, 429] and on_second == 200
    assert ready["cache"] == "in-process"


async def test_a_revoked_key_is_refused_by_every_process_at_once(database, empty_tables, tmp_path, redis_url):
    settings = cluster_settings(database, tmp_path, redis_url, per_minute=100)
    async with two_processes(database, settings) as (first, second):
        issued = await new_key(first, "rita")
        signed_in = await first.post(
            "/session", data={"key": issued.key}, headers={"Origin": BASE_URL}, follow_redirects=False
        )
        cookie = {"Cookie": f"{web_sessions.COOKIE_NAME}={signed_in.cookies[web_sessions.COOKIE_NAME]}"}
        for client in (first, second):  # both trust the key and the browser session now (cached for 300 s)
            assert (await client.get("/v1/me", headers=bearer(issued))).status_code == 200
            assert (await client.get("/v1/me", headers=cookie)).status_code == 200
        revoker = SharedState.create(settings.cache.url, settings.cache.prefix, settings.auth.key_cache_seconds)
        async with first.app.state.sessionmaker() as session:  # as `soundalike keys revoke` does, from elsewhere
            assert await api_keys.revoke_key(session, issued.id, revoker.key_cache)
        await revoker.close()
        by_key = await second.get("/v1/me", headers=bearer(issued))
        by_cookie = await second.get("/v1/me", headers=cookie)
        on_first = await first.get("/v1/me", headers=bearer(issued))
    assert by_key.status_code == 401 and "revoked" in by_key.json()["detail"]
    assert by_cookie.status_code == 401 and on_first.status_code == 401


async def test_without_a_cache_url_a_revocation_reaches_every_process_by_notify(database, empty_tables, tmp_path):
    settings = cluster_settings(database, tmp_path, None, per_minute=10_000)
    async with two_processes(database, settings) as (first, second):
        issued = await new_key(first, "rita")
        assert (await second.get("/v1/me", headers=bearer(issued))).status_code == 200  # cached for 300 s
        async with first.app.state.sessionmaker() as session:  # no cache given: as from another host
            assert await api_keys.revoke_key(session, issued.id)
        statuses = []
        for _ in range(600):  # the NOTIFY arrives after the commit, asynchronously: poll (at most 30 s)
            statuses.append((await second.get("/v1/me", headers=bearer(issued))).status_code)
            if statuses[-1] == 401:
                break
            await asyncio.sleep(0.05)
    assert statuses[-1] == 401, statuses


async def test_concurrent_hits_from_two_clients_get_distinct_counts(redis_url):
    prefix = f"test-{uuid.uuid4().hex}:"
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        limiters = [RedisRateLimiter(client, prefix) for client in clients]
        windows = await asyncio.gather(*(limiters[i % 2].hit("key:1", 60) for i in range(100)))
        ttl = await clients[0].pttl(f"{prefix}ratelimit:key:1")
    finally:
        for client in clients:
            await client.aclose()
    assert sorted(w.count for w in windows) == list(range(1, 101))
    assert 0 < ttl <= 60_000 and all(1 <= w.reset_seconds <= 60 for w in windows)


async def test_an_unreachable_cache_is_a_503_problem(database, empty_tables, tmp_path):
    port = _free_port()  # nothing listens there
    settings = cluster_settings(database, tmp_path, f"redis://127.0.0.1:{port}/0")
    async with AsyncTestClient(create_app(database.app_url, settings), timeout=60) as client:
        response = await client.get("/v1/me", headers=bearer(await new_key(client, "rita")))
        ready = await client.get("/ready")
    assert response.status_code == 503 and "SOUNDALIKE_CACHE_URL" in response.json()["detail"]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert ready.status_code == 503


def test_revoking_while_the_cache_is_down_says_the_key_is_revoked_all_the_same(database, empty_tables, owner_conn):
    port = _free_port()  # nothing listens there
    env = {**external(database), "SOUNDALIKE_CACHE_URL": f"redis://127.0.0.1:{port}/0"}
    created = soundalike("keys", "create", "--role", "reader", "--owner", "rita", env=env)
    key_id = created.stdout.split()[1]
    revoked = soundalike("keys", "revoke", key_id, env=env)
    assert_one_line_error(revoked, f"key {key_id} revoked, but the shared cache", "refuse it within 5 s")
    row = owner_conn.execute("SELECT revoked_at FROM api_keys WHERE id = %s", (int(key_id),)).fetchone()
    assert row[0] is not None

"""API keys: hashed at rest, bearer authentication, revocation, role guards."""

import pytest
from litestar import get
from litestar.di import NamedDependency
from litestar.testing import AsyncTestClient

from service.api.auth import requires_role
from service.app import create_app
from service.domain.access import api_keys
from service.domain.access.api_keys import Caller
from tests.integration.test_cli import external, soundalike


@pytest.fixture
async def client(settings, database, empty_tables):
    @get("/test/admin-only", guards=[requires_role("admin")], sync_to_thread=False)
    def admin_only(caller: NamedDependency[Caller]) -> dict:
        return {"owner": caller.owner}

    app = create_app(database.app_url, settings)
    app.register(admin_only)
    async with AsyncTestClient(app) as client:
        yield client


async def issue(client, settings, owner: str, role: str) -> api_keys.IssuedKey:
    async with client.app.state.sessionmaker() as session:
        issued = await api_keys.create_key(session, settings.auth.secret, owner, role)
        await session.commit()
    return issued


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_key_identifies_owner_and_role(client, settings):
    issued = await issue(client, settings, "alice", "creator")
    response = await client.get("/v1/me", headers=bearer(issued.key))
    assert response.status_code == 200
    assert response.json() == {"owner": "alice", "role": "creator", "key_id": issued.id}


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Basic abc"}, "missing API key"),
        ({"Authorization": "Bearer "}, "missing API key"),
        ({"Authorization": "Bearer sk_not-a-real-key"}, "unknown or revoked"),
        ({"Authorization": "Bearer something-else"}, "unknown or revoked"),
    ],
)
async def test_missing_or_unknown_key_is_401_problem(client, headers, detail):
    response = await client.get("/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert detail in response.json()["detail"]


async def test_revoked_key_stops_working_once_the_key_cache_forgets_it(client, settings):
    now = [0.0]
    client.app.state.key_cache = api_keys.KeyCache(settings.auth.key_cache_seconds, clock=lambda: now[0])
    issued = await issue(client, settings, "bob", "reader")
    assert (await client.get("/v1/me", headers=bearer(issued.key))).status_code == 200
    async with client.app.state.sessionmaker() as session:
        assert await api_keys.revoke_key(session, issued.id)
        await session.commit()
    now[0] = settings.auth.key_cache_seconds - 0.1
    assert (await client.get("/v1/me", headers=bearer(issued.key))).status_code == 200  # trusted a little longer
    now[0] = settings.auth.key_cache_seconds
    response = await client.get("/v1/me", headers=bearer(issued.key))
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


async def test_key_cache_keeps_callers_for_ttl_only():
    now = [0.0]
    cache = api_keys.KeyCache(2.0, max_entries=2, clock=lambda: now[0])
    alice, bob, carol = Caller("alice", "reader", 1), Caller("bob", "admin", 2), Caller("carol", "reader", 3)
    await cache.put("a", alice)
    await cache.put("b", bob)
    now[0] = 1.9
    assert await cache.get("a") == alice and await cache.get("b") == bob and await cache.get("x") is None
    await cache.put("c", carol)  # over max_entries: the cache starts afresh
    assert await cache.get("a") is None and await cache.get("c") == carol
    await cache.forget("c", "never-cached")
    assert await cache.get("c") is None
    await cache.put("c", carol)
    now[0] = 1.9 + 2.0
    assert await cache.get("c") is None
    off = api_keys.KeyCache(0.0)
    await off.put("a", alice)
    assert await off.get("a") is None


async def test_keys_are_stored_hashed(client, settings, owner_conn):
    issued = await issue(client, settings, "carol", "admin")
    stored = owner_conn.execute("SELECT key_hash, prefix FROM api_keys WHERE id = %s", (issued.id,)).fetchone()
    assert issued.key not in stored[0]
    assert stored[0] == api_keys.hash_key(issued.key, settings.auth.secret)
    assert issued.key.startswith(stored[1]) and len(stored[1]) < len(issued.key) // 3


@pytest.mark.parametrize(("role", "status"), [("reader", 403), ("creator", 403), ("admin", 200)])
async def test_role_guard(client, settings, role, status):
    issued = await issue(client, settings, "dave", role)
    response = await client.get("/test/admin-only", headers=bearer(issued.key))
    assert response.status_code == status
    if status == 403:
        assert "needs the admin role" in response.json()["detail"]


def test_keys_cli_create_list_revoke(database, empty_tables):
    created = soundalike(
        "keys", "create", "--role", "creator", "--owner", "erin", "--label", "laptop", env=external(database)
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("sk_")

    listed = soundalike("keys", "list", env=external(database))
    assert "erin" in listed.stdout and "active" in listed.stdout and key not in listed.stdout

    key_id = created.stdout.split()[1]
    revoked = soundalike("keys", "revoke", key_id, env=external(database))
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    again = soundalike("keys", "revoke", key_id, env=external(database))
    assert again.returncode == 1 and "no active key" in again.stderr


def test_caller_role_ranks():
    reader, admin = Caller("a", "reader", 1), Caller("b", "admin", 2)
    assert reader.has_role("reader") and not reader.has_role("creator")
    assert admin.has_role("creator") and admin.is_admin

"""The explorer's sign-in: an API key in a POST body becomes an HttpOnly SameSite cookie that the API and
the pages accept; forged, expired, revoked and cross-site uses are refused."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.domain.access import api_keys, web_sessions
from service.settings import AuthSettings
from tests.integration.api_helpers import api_settings

ORIGIN = {"Origin": "http://testserver.local"}


@pytest.fixture
async def client(database, tmp_path, empty_tables):
    settings = api_settings(database, tmp_path).model_copy(update={"auth": AuthSettings(key_cache_seconds=0)})
    async with AsyncTestClient(create_app(database.app_url, settings), base_url="http://testserver.local") as c:
        yield c


async def new_key(client, owner="alice", role="creator") -> api_keys.IssuedKey:
    async with client.app.state.sessionmaker() as session:
        issued = await api_keys.create_key(session, client.app.state.settings.auth.secret, owner, role)
        await session.commit()
    return issued


async def sign_in(client, key: str):
    return await client.post("/session", data={"key": key}, headers=ORIGIN, follow_redirects=False)


async def test_signed_out_pages_send_you_to_sign_in(client):
    for path in ("/", "/generate", "/library", "/map", "/like/00000000-0000-0000-0000-000000000000"):
        response = await client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (302, "/signin"), path
    page = await client.get("/signin")
    assert page.status_code == 200 and '<input id="key" name="key" type="password"' in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self' covers scripts
    assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_a_key_becomes_an_httponly_samesite_cookie(client):
    issued = await new_key(client)
    response = await sign_in(client, issued.key)
    assert (response.status_code, response.headers["location"]) == (303, "/generate")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{web_sessions.COOKIE_NAME}=") and issued.key not in cookie
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/" in cookie
    me = await client.get("/v1/me")  # the client kept the cookie; no Authorization header
    assert me.json() == {"owner": "alice", "role": "creator", "key_id": issued.id}
    page = await client.get("/generate")
    assert page.status_code == 200 and "alice" in page.text and 'list="tag-list"' in page.text


async def test_wrong_key_is_refused_on_the_page(client):
    response = await sign_in(client, "sk_not-a-key")
    assert response.status_code == 401 and "unknown or revoked" in response.text
    assert "set-cookie" not in response.headers


async def test_cross_site_uses_are_refused(client):
    issued = await new_key(client)
    refused = await client.post("/session", data={"key": issued.key}, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    await sign_in(client, issued.key)
    post = await client.post("/v1/generations", json={"prompt": "piano"}, headers={"Origin": "http://evil.example"})
    assert post.status_code == 403 and "this site's own pages" in post.json()["detail"]
    assert (await client.get("/v1/me", headers={"Origin": "http://evil.example"})).status_code == 200  # reads: fine


async def test_revoked_forged_and_expired_tokens(client):
    issued = await new_key(client)
    await sign_in(client, issued.key)
    secret = client.app.state.settings.auth.secret
    caller = api_keys.Caller("alice", "creator", issued.id)
    token = client.cookies[web_sessions.COOKIE_NAME]
    assert web_sessions.token_key_id(secret, token) == issued.id
    key_id, expires, signature = token.split(".")
    assert web_sessions.token_key_id(secret, f"{int(key_id) + 1}.{expires}.{signature}") is None
    assert web_sessions.token_key_id("another secret", token) is None
    assert web_sessions.token_key_id(secret, web_sessions.issue_token(secret, caller, lifetime=-1)) is None

    client.cookies.set(web_sessions.COOKIE_NAME, f"{int(key_id) + 1}.{expires}.{signature}")
    assert (await client.get("/v1/me")).status_code == 401
    client.cookies.set(web_sessions.COOKIE_NAME, token)
    async with client.app.state.sessionmaker() as session:
        assert await api_keys.revoke_key(session, issued.id)
        await session.commit()
    assert (await client.get("/v1/me")).status_code == 401
    assert (await client.get("/generate", follow_redirects=False)).headers["location"] == "/signin"


async def test_sign_out_clears_the_cookie(client):
    await sign_in(client, (await new_key(client)).key)
    response = await client.post("/signout", headers=ORIGIN, follow_redirects=False)
    assert response.headers["location"] == "/signin"
    assert "Max-Age=0" in response.headers["set-cookie"] or "max-age=0" in response.headers["set-cookie"].lower()
    assert (await client.get("/v1/me")).status_code == 401


async def test_static_files_are_served(client):
    script = await client.get("/static/app.js")
    assert script.status_code == 200 and "EventSource" in script.text
    assert (await client.get("/static/app.css")).status_code == 200

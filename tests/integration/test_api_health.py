"""Health, readiness and OpenAPI through the real app and the real database."""

import re

from litestar.testing import AsyncTestClient

from service.app import create_app
from service.db.schema import migrate


async def test_health_and_ready(settings, database):
    async with AsyncTestClient(create_app(database.app_url, settings)) as client:
        health = await client.get("/health")
        assert health.status_code == 200 and health.json() == {"status": "ok"}

        ready = await client.get("/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "ready"
        assert body["schema"] == migrate.head_revision()
        assert tuple(int(p) for p in body["pgvector"].split(".")[:2]) >= (0, 8)


async def test_openapi_document(settings, database):
    async with AsyncTestClient(create_app(database.app_url, settings)) as client:
        response = await client.get("/schema/openapi.json")
        assert response.status_code == 200
        doc = response.json()
        assert doc["info"]["title"] == "Soundalike"
        assert {"/health", "/ready"} <= set(doc["paths"])


async def test_ready_is_503_problem_when_migrations_are_not_at_head(settings, make_database):
    handle, _ = make_database("not_migrated")
    async with AsyncTestClient(create_app(handle.app_url, settings)) as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "soundalike db upgrade" in response.json()["detail"]


async def test_ready_is_503_problem_when_database_is_unreachable(settings, tmp_path):
    async with AsyncTestClient(create_app(f"postgresql+psycopg://nobody@/nowhere?host={tmp_path}", settings)) as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    assert "database unreachable" in response.json()["detail"]


async def test_unknown_path_is_a_problem_document(settings, database):
    async with AsyncTestClient(create_app(database.app_url, settings)) as client:
        response = await client.get("/nope")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 404


async def test_schema_pages_load_nothing_from_outside_the_app(settings, database):
    """/schema works offline: every script, style and icon a docs page names is served by the app itself."""
    async with AsyncTestClient(create_app(database.app_url, settings)) as client:
        for page in ("/schema", "/schema/swagger"):
            response = await client.get(page)
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
            html = response.text
            assert "SwaggerUIBundle" in html and "validatorUrl: null" in html
            assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
            assert len(assets) == 4, assets  # the bundle, the preset, the stylesheet, the icon
            for url in assets:
                assert not re.match(r"(?i)^(https?:)?//", url), f"{page} loads {url} from outside the app"
                asset = await client.get(url)
                assert asset.status_code == 200 and len(asset.content) > 0, url
            assert not re.search(r"(?i)@import|url\(\s*['\"]?(https?:)?//", html)
        stylesheet = (await client.get("/schema/swagger-ui/swagger-ui.css")).text
        assert not re.search(r"(?i)@import|url\(\s*['\"]?(https?:)?//", stylesheet)
        assert (await client.get("/schema/openapi.json")).json()["info"]["title"] == "Soundalike"
        assert (await client.get("/schema/redoc")).status_code == 404  # the CDN-only UIs are not served

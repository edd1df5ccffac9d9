"""Health, readiness and OpenAPI through the real app and the real database."""

from litestar.testing import AsyncTestClient

from service.app import create_app
from service.db import migrate


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

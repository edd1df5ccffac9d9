"""GET /metrics: admin only; requests per route template, jobs by state and queue depth, generations by
failure class, pool usage: all read from a real database and a real app."""

import uuid

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.api_helpers import api_client, api_settings, bearer_for


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def matching(found: dict, name: str, **labels: str) -> list[tuple[frozenset, float]]:
    return [(k[1], v) for k, v in found.items() if k[0] == name and set(labels.items()) <= k[1]]


async def test_metrics_are_for_admin_keys_only(database, empty_tables, tmp_path):
    async with api_client(database, api_settings(database, tmp_path), worker=False) as client:
        reader = await bearer_for(client, "rita", "reader")
        assert (await client.get("/metrics")).status_code == 401
        denied = await client.get("/metrics", headers=reader)
        assert denied.status_code == 403 and denied.headers["content-type"].startswith("application/problem+json")


async def test_requests_are_counted_per_route_template(database, empty_tables, tmp_path):
    async with api_client(database, api_settings(database, tmp_path), worker=False) as client:
        admin, reader = (await bearer_for(client, "ops", "admin"), await bearer_for(client, "rita", "reader"))
        route = "/v1/generations/{generation_id}"
        labels = {"method": "GET", "path": route, "status_code": "404", "app_name": "soundalike"}
        first = samples((await client.get("/metrics", headers=admin)).text)
        before = value(first, "soundalike_http_requests_total", **labels) or 0
        for _ in range(3):
            assert (await client.get(f"/v1/generations/{uuid.uuid4()}", headers=reader)).status_code == 404
        response = await client.get("/metrics", headers=admin)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        found = samples(response.text)
        assert value(found, "soundalike_http_requests_total", **labels) == before + 3
        assert value(found, "soundalike_http_request_duration_seconds_count", **labels) == before + 3
        assert matching(found, "soundalike_http_request_duration_seconds_bucket", path=route, le="+Inf")
        assert not matching(found, "soundalike_http_requests_total", path="/metrics")


async def test_jobs_generations_and_pools_are_read_at_scrape_time(database, empty_tables, owner_conn, tmp_path):
    model_id = owner_conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version) VALUES ('m', 'm', 'local', 'v1') RETURNING id"
    ).fetchone()[0]
    rows = [("failed", "resource_exhaustion")] * 2 + [("failed", "bad_input"), ("pending", None), ("succeeded", None)]
    for status, failure_class in rows:
        owner_conn.execute(
            "INSERT INTO generations (owner, model_id, kind, status, failure_class) "
            "VALUES ('o', %s, 'text2music', %s, %s)",
            (model_id, status, failure_class),
        )
    for status in ["todo", "todo", "todo", "doing", "failed"]:
        owner_conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status) "
            "VALUES ('generation', 'soundalike:generate', '{}', %s)",
            (status,),
        )
    async with api_client(database, api_settings(database, tmp_path), worker=False) as client:
        admin = await bearer_for(client, "ops", "admin")
        found = samples((await client.get("/metrics", headers=admin)).text)
    assert value(found, "soundalike_jobs_queue_depth", queue="generation") == 3
    assert value(found, "soundalike_jobs", queue="generation", state="doing") == 1
    assert value(found, "soundalike_jobs", queue="generation", state="failed") == 1
    assert value(found, "soundalike_jobs_oldest_waiting_seconds", queue="generation") >= 0
    failed = matching(found, "soundalike_generations", status="failed")
    by_class = {dict(labels)["failure_class"]: v for labels, v in failed}
    assert by_class == {"resource_exhaustion": 2, "bad_input": 1}
    assert value(found, "soundalike_generations", status="pending", failure_class="") == 1
    assert value(found, "soundalike_generations", status="running", failure_class="") == 0, "empty: 0, not absent"
    assert value(found, "soundalike_jobs_queue_depth", queue="reencode") == 0
    assert value(found, "soundalike_jobs", queue="maintenance", state="doing") == 0
    assert value(found, "soundalike_db_pool_size", pool="app") == 5
    assert value(found, "soundalike_db_pool_connections", pool="app", state="idle") >= 1  # the requests' one
    assert value(found, "soundalike_db_pool_size", pool="jobs") == 10

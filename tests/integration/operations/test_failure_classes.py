"""Failed generations carry a failure class on the row, in the API and in the metrics: one query answers
"failed because of resources or input?". Real worker, real database."""

import asyncio
import time
import uuid

import pytest
from prometheus_client import REGISTRY

from tests.integration.api_helpers import api_client, api_settings, bearer_for, wait_until_finished


def failures_counted(failure_class: str) -> float:
    return REGISTRY.get_sample_value("soundalike_generation_failures_total", {"failure_class": failure_class}) or 0


def job_runs(outcome: str) -> float:
    labels = {"task": "soundalike:generate", "outcome": outcome}
    return REGISTRY.get_sample_value("soundalike_job_duration_seconds_count", labels) or 0


async def wait_until_classified(client, headers, generation_id) -> dict:
    """The failure is recorded first (status, error), its class right after, in the next transaction."""
    deadline = time.monotonic() + 60
    while (body := await wait_until_finished(client, headers, generation_id, timeout=60))["failure_class"] is None:
        assert time.monotonic() < deadline, f"{generation_id} was never classified: {body}"
        await asyncio.sleep(0.1)
    return body


def add_model(owner_conn, checkpoint: str) -> int:
    return owner_conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version, checkpoint_path, checkpoint_sha256, "
        "is_default) VALUES ('broken', 'broken', 'local', 'v1', %s, 'ab', true) RETURNING id",
        (checkpoint,),
    ).fetchone()[0]


async def test_a_model_that_cannot_load_is_a_model_error(database, empty_tables, owner_conn, tmp_path):
    add_model(owner_conn, str(tmp_path / "missing.pt"))
    counted, failed_runs = failures_counted("model_error"), job_runs("failed")
    async with api_client(database, api_settings(database, tmp_path), worker=True) as client:
        alice = await bearer_for(client, "alice", "creator")
        created = await client.post("/v1/generations", json={"prompt": "bass", "batch_size": 2}, headers=alice)
        for generation_id in created.json()["ids"]:
            done = await wait_until_classified(client, alice, generation_id)
            assert done["status"] == "failed" and done["failure_class"] == "model_error"
    assert failures_counted("model_error") == counted + 2
    assert job_runs("failed") >= failed_runs + 1
    by_class = owner_conn.execute(
        "SELECT failure_class, count(*) FROM generations WHERE status = 'failed' GROUP BY failure_class"
    ).fetchall()
    assert by_class == [("model_error", 2)]


async def test_a_source_without_a_latent_is_bad_input(database, empty_tables, owner_conn, tmp_path):
    model_id = add_model(owner_conn, str(tmp_path / "never-loaded.pt"))
    parent = owner_conn.execute(
        "INSERT INTO generations (owner, model_id, kind, status) VALUES ('alice', %s, 'import', 'succeeded') "
        "RETURNING id",
        (model_id,),
    ).fetchone()[0]
    variant = owner_conn.execute(
        "INSERT INTO generations (owner, model_id, kind, status, parent_id, seed, params) "
        "VALUES ('alice', %s, 'variant', 'pending', %s, 1, '{\"variance\": 0.3}') RETURNING id",
        (model_id, parent),
    ).fetchone()[0]
    counted = failures_counted("bad_input")
    async with api_client(database, api_settings(database, tmp_path), worker=True) as client:
        alice = await bearer_for(client, "alice", "creator")
        await client.app.state.jobs.defer_generation([variant])
        done = await wait_until_classified(client, alice, str(variant))
    assert done["status"] == "failed" and done["failure_class"] == "bad_input", done
    assert "no latent" in done["error"]
    assert failures_counted("bad_input") == counted + 1
    # the model was never touched: an input problem is not the model's
    assert owner_conn.execute("SELECT status FROM models WHERE id = %s", (model_id,)).fetchone()[0] == "READY"


async def test_only_failed_unclassified_rows_are_classified(database, empty_tables, owner_conn, settings):
    from service.db.engine import create_engine, session_factory
    from service.domain.generation import failures

    model_id = add_model(owner_conn, "/nowhere.pt")
    ids = [
        owner_conn.execute(
            "INSERT INTO generations (owner, model_id, kind, status, failure_class) "
            "VALUES ('o', %s, 'text2music', %s, %s) RETURNING id",
            (model_id, status, failure_class),
        ).fetchone()[0]
        for status, failure_class in [("failed", None), ("failed", "bad_input"), ("succeeded", None)]
    ]
    engine = create_engine(database.app_url, settings.database)
    try:
        async with session_factory(engine)() as session:
            assert await failures.record(session, [*ids, uuid.uuid4()], "infrastructure") == 1
            with pytest.raises(ValueError, match="failure class must be one of"):
                await failures.record(session, ids, "cosmic rays")
    finally:
        await engine.dispose()
    classes = owner_conn.execute("SELECT failure_class FROM generations ORDER BY created_at, id").fetchall()
    assert sorted(c for (c,) in classes if c) == ["bad_input", "infrastructure"]

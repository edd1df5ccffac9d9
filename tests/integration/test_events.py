"""GET /v1/events against the real app on 127.0.0.1: order, keep-alives, resume, batches, no leaks.

Rows change through plain SQL as the migration owner (as a worker's transaction would change them): the
triggers of migration 0006_events write the log and NOTIFY, the app's listener wakes the stream."""

from __future__ import annotations

import threading
import uuid

import httpx
import psycopg
import pytest

from service.app import create_app
from service.db.server import urls
from service.settings import EventsSettings
from tests.integration.api_helpers import api_settings
from tests.integration.live_server import insert_key, live_server, sse_messages, take


@pytest.fixture
def server(database, tmp_path, model_id):
    settings = api_settings(database, tmp_path).model_copy(update={"events": EventsSettings(keepalive_seconds=0.3)})
    with live_server(create_app(database.app_url, settings)) as base_url:
        yield base_url


@pytest.fixture
def keys(owner_conn, model_id) -> dict[str, dict[str, str]]:
    return {owner: {"Authorization": f"Bearer {insert_key(owner_conn, owner)}"} for owner in ("alice", "bob")}


def insert(conn, model_id: int, owner: str, n: int = 1, batch_id=None) -> list[uuid.UUID]:
    rows = conn.execute(
        "INSERT INTO generations (owner, model_id, kind, seed, batch_id) "
        "SELECT %s, %s, 'variant', s, %s FROM generate_series(1, %s) s RETURNING id",
        (owner, model_id, batch_id, n),
    ).fetchall()
    return [r[0] for r in rows]


def set_status(conn, ids, status: str) -> None:
    conn.execute("UPDATE generations SET status = %s WHERE id = ANY(%s)", (status, list(ids)))


def open_stream(client: httpx.Client, headers, **params):
    return client.stream("GET", "/v1/events", headers=headers, params=params)


def test_events_arrive_in_order_after_ready_with_keepalives(server, keys, owner_conn, model_id):
    with httpx.Client(base_url=server, timeout=10) as client, open_stream(client, keys["alice"]) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = sse_messages(response)
        [ready] = take(stream, 1)
        assert ready.event == "ready" and ready.json() == {"last_event_id": int(ready.id)}

        a, b = insert(owner_conn, model_id, "alice", 2)
        set_status(owner_conn, [a], "running")
        set_status(owner_conn, [a], "succeeded")
        set_status(owner_conn, [b], "failed")
        got = take(stream, 5)
        assert [(m.event, m.json()["id"], m.json()["status"]) for m in got] == [
            ("generation", str(a), "pending"),
            ("generation", str(b), "pending"),
            ("generation", str(a), "running"),
            ("generation", str(a), "succeeded"),
            ("generation", str(b), "failed"),
        ]
        ids = [int(m.id) for m in got]
        assert ids == sorted(ids) and ids[0] > int(ready.id)
        assert all(m.json()["event_id"] == int(m.id) for m in got)

        [silence] = take(stream, 1, keep_comments=True)
        assert silence.event == "comment" and silence.comments == ["keep-alive"]


def test_an_unchanged_status_is_no_event(server, keys, owner_conn, model_id):
    [a] = insert(owner_conn, model_id, "alice")
    with httpx.Client(base_url=server, timeout=10) as client, open_stream(client, keys["alice"]) as response:
        stream = sse_messages(response)
        take(stream, 1)
        owner_conn.execute("UPDATE generations SET visibility = 'public' WHERE id = %s", (a,))
        set_status(owner_conn, [a], "cancelled")
        [event] = take(stream, 1)
        assert event.json()["status"] == "cancelled"


def test_resume_with_last_event_id_gets_exactly_what_was_missed(server, keys, owner_conn, model_id):
    with httpx.Client(base_url=server, timeout=10) as client:
        with open_stream(client, keys["alice"]) as response:
            stream = sse_messages(response)
            take(stream, 1)
            [a] = insert(owner_conn, model_id, "alice")
            [seen] = take(stream, 1)
        set_status(owner_conn, [a], "running")  # while disconnected
        insert(owner_conn, model_id, "bob")
        set_status(owner_conn, [a], "succeeded")

        with open_stream(client, {**keys["alice"], "Last-Event-ID": seen.id}) as response:
            stream = sse_messages(response)
            ready, running, succeeded = take(stream, 3)
            assert ready.id == seen.id
            assert [running.json()["status"], succeeded.json()["status"]] == ["running", "succeeded"]
            assert {running.json()["id"], succeeded.json()["id"]} == {str(a)}

        with open_stream(client, keys["alice"], after=0) as response:  # the query form, from the start
            statuses = [m.json()["status"] for m in take(sse_messages(response), 4)[1:]]
            assert statuses == ["pending", "running", "succeeded"]


def test_a_stream_never_carries_another_owners_events(server, keys, owner_conn, model_id):
    with httpx.Client(base_url=server, timeout=10) as client, open_stream(client, keys["bob"], after=0) as response:
        stream = sse_messages(response)
        take(stream, 1)
        alices = insert(owner_conn, model_id, "alice", 3)
        set_status(owner_conn, alices, "running")
        [bobs] = insert(owner_conn, model_id, "bob")
        [event] = take(stream, 1)
        assert event.json()["id"] == str(bobs)
        [silence] = take(stream, 1, keep_comments=True)
        assert silence.event == "comment"
    leaked = owner_conn.execute("SELECT count(*) FROM events WHERE owner = 'alice'").fetchone()[0]
    assert leaked == 6  # they exist, bob just never saw them


def test_batch_progress_events(server, keys, owner_conn, model_id):
    batch_id = owner_conn.execute(
        "INSERT INTO batches (owner, kind, total) VALUES ('alice', 'variant', 3) RETURNING id"
    ).fetchone()[0]
    with httpx.Client(base_url=server, timeout=10) as client, open_stream(client, keys["alice"]) as response:
        stream = sse_messages(response)
        take(stream, 1)
        a, b, c = insert(owner_conn, model_id, "alice", 3, batch_id=batch_id)
        created = take(stream, 4)
        assert [m.event for m in created] == ["generation"] * 3 + ["batch"]
        assert created[3].json() | {"event_id": 0, "at": ""} == {
            "id": str(batch_id),
            "status": "pending",
            "total": 3,
            "done": 0,
            "failed": 0,
            "cancelled": 0,
            "pending": 3,
            "running": 0,
            "event_id": 0,
            "at": "",
        }
        set_status(owner_conn, [a, b], "running")
        set_status(owner_conn, [a, b], "succeeded")
        batches = [m.json() for m in take(stream, 6) if m.event == "batch"]
        assert [(e["status"], e["done"], e["running"]) for e in batches] == [("running", 0, 2), ("running", 2, 0)]
        set_status(owner_conn, [c], "failed")
        [_, last] = take(stream, 2)
        assert (last.event, last.json()["status"], last.json()["failed"]) == ("batch", "partial", 1)


def test_one_owners_events_commit_in_id_order(database, owner_conn, model_id):
    """A second writer for the same owner waits for the first to commit, so ids follow commit order."""
    [a, b] = insert(owner_conn, model_id, "alice", 2)
    [c] = insert(owner_conn, model_id, "bob")
    url = urls.libpq_url(database.migration_url)
    with psycopg.connect(url) as first, psycopg.connect(url) as second, psycopg.connect(url) as third:
        first.execute("UPDATE generations SET status = 'running' WHERE id = %s", (a,))
        third.execute("SET statement_timeout = '10s'")  # another owner: must not wait for alice's writer
        third.execute("UPDATE generations SET status = 'running' WHERE id = %s", (c,))
        third.commit()
        pid = second.info.backend_pid
        writer = threading.Thread(target=update_and_commit, args=(second, b))
        writer.start()
        while waits_for(owner_conn, pid) != "Lock":
            assert writer.is_alive(), "the second writer did not wait for the first"
        first.commit()
        writer.join(timeout=30)
    order = owner_conn.execute(
        "SELECT subject_id FROM events WHERE owner = 'alice' AND data->>'status' = 'running' ORDER BY id"
    ).fetchall()
    assert [r[0] for r in order] == [a, b]


def update_and_commit(conn, generation_id) -> None:
    conn.execute("UPDATE generations SET status = 'running' WHERE id = %s", (generation_id,))
    conn.commit()


def waits_for(conn, pid: int) -> str | None:
    return conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]


async def test_bad_last_event_id_and_no_key(database, tmp_path, keys):
    from litestar.testing import AsyncTestClient

    async with AsyncTestClient(create_app(database.app_url, api_settings(database, tmp_path))) as client:
        bad = await client.get("/v1/events", headers={**keys["alice"], "Last-Event-ID": "abc"})
        assert bad.status_code == 422
        assert bad.json()["errors"] == [
            {"field": "Last-Event-ID", "message": "Last-Event-ID must be an event id; got 'abc'", "source": "header"}
        ]
        assert (await client.get("/v1/events")).status_code == 401


async def test_prune_keeps_only_the_retention_window(database, owner_conn, model_id):
    from service.db.engine import create_engine, session_factory
    from service.domain.notify import events
    from service.settings import DatabaseSettings

    insert(owner_conn, model_id, "alice", 2)
    owner_conn.execute("UPDATE events SET created_at = now() - interval '8 days' WHERE id = 1")
    engine = create_engine(database.app_url, DatabaseSettings())
    try:
        async with session_factory(engine)() as session:
            assert await events.prune(session, retention_days=7) == 1
    finally:
        await engine.dispose()
    assert owner_conn.execute("SELECT array_agg(id) FROM events").fetchone()[0] == [2]

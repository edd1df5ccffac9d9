"""A request committed but never queued (crash between commit and defer) gets its job from the sweep."""

from service.jobs import recovery
from service.jobs.runtime import Runtime
from tests.integration.api_helpers import api_client, api_settings, bearer_for


def insert_pending(owner_conn, model_id: int, age: str, count: int) -> list:
    return [
        row[0]
        for row in owner_conn.execute(
            "INSERT INTO generations (owner, model_id, kind, status, params, seed, created_at) "
            "SELECT 'alice', %s, 'text2music', 'pending', '{\"prompt\": \"piano\", \"steps\": 2, "
            '"guidance_scale": 1.0}\', g, now() - %s::interval FROM generate_series(1, %s) g RETURNING id',
            (model_id, age, count),
        ).fetchall()
    ]


async def test_old_unqueued_requests_get_one_job_each(database, tiny_model, tmp_path, owner_conn):
    stranded = insert_pending(owner_conn, tiny_model["id"], "5 minutes", 3)  # one request of 3 clips
    recent = insert_pending(owner_conn, tiny_model["id"], "0 seconds", 1)  # may still be deferred by its API call
    settings = api_settings(database, tmp_path)
    async with api_client(database, settings, worker=False) as client:
        runtime = Runtime.create(database.app_url, settings)
        try:
            assert await recovery.defer_orphaned(client.app.state.jobs.app, runtime, older_than_seconds=30) == 1
        finally:
            await runtime.close()

    jobs = dict(owner_conn.execute("SELECT id, job_id FROM generations").fetchall())
    assert len({jobs[i] for i in stranded}) == 1 and jobs[stranded[0]] is not None
    assert jobs[recent[0]] is None
    queued = owner_conn.execute(
        "SELECT args->'generation_ids' FROM procrastinate_jobs WHERE id = %s", (jobs[stranded[0]],)
    ).fetchone()[0]
    assert sorted(queued) == sorted(str(i) for i in stranded)


async def test_requests_stranded_by_a_cancelled_job_get_a_new_one(database, tiny_model, tmp_path, owner_conn):
    """Before a cancel left the job to the other clips, cancelling one clip cancelled the whole job: its
    siblings stayed pending for good. The sweep queues them again (the cancelled clip stays cancelled)."""
    settings = api_settings(database, tmp_path)
    async with api_client(database, settings, worker=False) as client:
        alice = await bearer_for(client, "alice", "creator")
        body = {"prompt": "piano", "seed": 1, "batch_size": 3}
        ids = (await client.post("/v1/generations", json=body, headers=alice)).json()["ids"]
        owner_conn.execute("UPDATE generations SET status = 'cancelled' WHERE id = %s", (ids[1],))
        old_job = owner_conn.execute("SELECT job_id FROM generations WHERE id = %s", (ids[0],)).fetchone()[0]
        await client.app.state.jobs.cancel(old_job)  # what a cancel of clip 1 used to do
        runtime = Runtime.create(database.app_url, settings)
        try:
            assert await recovery.requeue_stranded(client.app.state.jobs.app, runtime) == 1
            assert await recovery.requeue_stranded(client.app.state.jobs.app, runtime) == 0  # once only
        finally:
            await runtime.close()

    jobs = dict(owner_conn.execute("SELECT id::text, job_id FROM generations").fetchall())
    new_job = jobs[ids[0]]
    assert new_job != old_job and jobs[ids[2]] == new_job and jobs[ids[1]] == old_job
    queued = owner_conn.execute(
        "SELECT status, args->'generation_ids' FROM procrastinate_jobs WHERE id = %s", (new_job,)
    ).fetchone()
    assert queued[0] == "todo" and sorted(queued[1]) == sorted([ids[0], ids[2]])

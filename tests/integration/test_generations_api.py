"""The generation API without a worker: validation, ownership, roles, queue bound, cancel, delete, listing."""

import uuid

import pytest

from service.ml.config import ModelConfig
from tests.integration.api_helpers import api_client, api_settings, bearer_for

GOOD = {"prompt": "guitar, major", "seed": 1, "steps": 4}


@pytest.fixture
async def client(database, tiny_model, tmp_path):
    async with api_client(database, api_settings(database, tmp_path, queue_limit=5), worker=False) as client:
        client.alice = await bearer_for(client, "alice", "creator")
        client.bob = await bearer_for(client, "bob", "creator")
        client.reader = await bearer_for(client, "rita", "reader")
        client.admin = await bearer_for(client, "root", "admin")
        yield client


def count(owner_conn, table="generations") -> int:
    return owner_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "steps": 0}, "steps"),
        ({**GOOD, "steps": 201}, "steps"),
        ({**GOOD, "guidance_scale": -1}, "guidance_scale"),
        ({**GOOD, "guidance_scale": 20.5}, "guidance_scale"),
        ({**GOOD, "batch_size": 9}, "batch_size"),
        ({**GOOD, "batch_size": 0}, "batch_size"),
        ({**GOOD, "seed": -1}, "seed"),
        ({**GOOD, "steps": "many"}, "steps"),
        ({**GOOD, "visibility": "secret"}, "visibility"),
        ({**GOOD, "colour": "blue"}, "colour"),
        ({"seed": 1}, "prompt"),
        ({**GOOD, "prompt": ""}, "prompt"),
    ],
)
async def test_invalid_bodies_are_400_naming_the_field(client, owner_conn, body, field):
    response = await client.post("/v1/generations", json=body, headers=client.alice)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(field in (error["field"] or "") or field in error["message"] for error in problem["errors"])
    assert count(owner_conn) == 0


async def test_range_errors_say_the_allowed_range(client):
    response = await client.post("/v1/generations", json={**GOOD, "steps": 500}, headers=client.alice)
    assert "<= 200" in response.json()["errors"][0]["message"]


async def test_malformed_json_is_400(client, owner_conn):
    response = await client.post(
        "/v1/generations", content=b'{"prompt": "piano",', headers={**client.alice, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and count(owner_conn) == 0


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({**GOOD, "prompt": "pianoo, minor"}, "prompt", "did you mean 'piano'"),
        ({**GOOD, "prompt": "piano, 400 bpm"}, "prompt", "outside the allowed range"),
        ({**GOOD, "model": "nope"}, "model", "unknown model alias 'nope'; known: tiny"),
    ],
)
async def test_unknown_tags_and_models_are_422(client, owner_conn, body, field, fragment):
    response = await client.post("/v1/generations", json=body, headers=client.alice)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["field"] == field and fragment in problem["detail"]
    assert count(owner_conn) == 0


async def test_archived_model_answers_409(client, owner_conn):
    owner_conn.execute("UPDATE models SET status = 'ARCHIVED'")
    response = await client.post("/v1/generations", json=GOOD, headers=client.alice)
    assert response.status_code == 409 and "archived" in response.json()["detail"]
    assert count(owner_conn) == 0


async def test_readers_cannot_generate_and_keys_are_required(client, owner_conn):
    assert (await client.post("/v1/generations", json=GOOD, headers=client.reader)).status_code == 403
    assert (await client.post("/v1/generations", json=GOOD)).status_code == 401
    assert count(owner_conn) == 0


async def test_not_a_uuid_is_a_client_error(client):
    response = await client.get("/v1/generations/not-a-uuid", headers=client.alice)
    assert 400 <= response.status_code < 500


async def test_full_queue_answers_429_with_retry_after(client, owner_conn):
    accepted = await client.post("/v1/generations", json={**GOOD, "batch_size": 4}, headers=client.alice)
    assert accepted.status_code == 202
    refused = await client.post("/v1/generations", json={**GOOD, "batch_size": 2}, headers=client.alice)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert "queue is full" in refused.json()["detail"]
    assert count(owner_conn) == 4
    jobs = owner_conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'soundalike:generate'")
    assert jobs.fetchone()[0] == 1


async def test_a_batch_larger_than_the_queue_limit_is_422_not_429(client, owner_conn):
    refused = await client.post("/v1/generations", json={**GOOD, "batch_size": 6}, headers=client.alice)
    assert refused.status_code == 422 and "retry-after" not in refused.headers, refused.text
    assert refused.json()["errors"][0]["field"] == "batch_size" and "never holds more than 5" in refused.text
    assert count(owner_conn) == 0


async def test_private_items_are_404_to_others_public_items_are_visible(client):
    private = (await client.post("/v1/generations", json=GOOD, headers=client.alice)).json()["ids"][0]
    public = (await client.post("/v1/generations", json={**GOOD, "visibility": "public"}, headers=client.alice)).json()[
        "ids"
    ][0]
    for other in (client.bob, client.reader):
        assert (await client.get(f"/v1/generations/{private}", headers=other)).status_code == 404
        assert (await client.get(f"/v1/generations/{public}", headers=other)).status_code == 200
    assert (await client.get(f"/v1/generations/{private}", headers=client.admin)).status_code == 200
    # others can neither cancel nor delete it, and learn nothing from trying
    assert (await client.post(f"/v1/generations/{public}/cancel", headers=client.bob)).status_code == 404
    assert (await client.delete(f"/v1/generations/{public}", headers=client.bob)).status_code == 404


async def test_the_owner_or_an_admin_changes_visibility_others_cannot(client):
    generation_id = (await client.post("/v1/generations", json=GOOD, headers=client.alice)).json()["ids"][0]
    url = f"/v1/generations/{generation_id}"
    assert (await client.get(url, headers=client.bob)).status_code == 404
    made_public = await client.patch(url, json={"visibility": "public"}, headers=client.alice)
    assert made_public.status_code == 200 and made_public.json()["visibility"] == "public"
    assert (await client.get(url, headers=client.bob)).json()["visibility"] == "public"
    # another creator sees it now but may not change it (404, as for cancel and delete); a reader may change nothing
    assert (await client.patch(url, json={"visibility": "private"}, headers=client.bob)).status_code == 404
    assert (await client.patch(url, json={"visibility": "private"}, headers=client.reader)).status_code == 403
    assert (await client.get(url, headers=client.alice)).json()["visibility"] == "public"
    made_private = await client.patch(url, json={"visibility": "private"}, headers=client.admin)
    assert made_private.status_code == 200 and made_private.json()["visibility"] == "private"
    assert (await client.get(url, headers=client.bob)).status_code == 404
    assert (await client.patch(url, json={"visibility": "public"}, headers=client.bob)).status_code == 404


async def test_a_bad_visibility_is_422_naming_it(client):
    generation_id = (await client.post("/v1/generations", json=GOOD, headers=client.alice)).json()["ids"][0]
    url = f"/v1/generations/{generation_id}"
    bad = await client.patch(url, json={"visibility": "secret"}, headers=client.alice)
    assert bad.status_code == 422, bad.text
    [error] = bad.json()["errors"]
    assert error["field"] == "visibility" and "private, public" in error["message"]
    unknown_field = await client.patch(url, json={"visibility": "public", "owner": "bob"}, headers=client.alice)
    assert unknown_field.status_code == 400 and unknown_field.json()["errors"][0]["field"] == "owner"
    unknown_item = await client.patch(
        f"/v1/generations/{uuid.uuid4()}", json={"visibility": "public"}, headers=client.alice
    )
    assert unknown_item.status_code == 404
    assert (await client.get(url, headers=client.alice)).json()["visibility"] == "private"


async def test_cancel_then_cancel_again_conflicts(client, owner_conn):
    generation_id = (await client.post("/v1/generations", json=GOOD, headers=client.alice)).json()["ids"][0]
    cancelled = await client.post(f"/v1/generations/{generation_id}/cancel", headers=client.alice)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert job_status(owner_conn, generation_id) == "cancelled"
    again = await client.post(f"/v1/generations/{generation_id}/cancel", headers=client.alice)
    assert again.status_code == 409


def job_status(owner_conn, generation_id: str) -> str:
    return owner_conn.execute(
        "SELECT j.status FROM procrastinate_jobs j JOIN generations g ON g.job_id = j.id WHERE g.id = %s",
        (generation_id,),
    ).fetchone()[0]


async def test_cancelling_one_clip_leaves_the_job_to_its_siblings(client, owner_conn):
    ids = (await client.post("/v1/generations", json={**GOOD, "batch_size": 4}, headers=client.alice)).json()["ids"]
    assert (await client.post(f"/v1/generations/{ids[1]}/cancel", headers=client.alice)).status_code == 200
    assert (await client.delete(f"/v1/generations/{ids[2]}", headers=client.alice)).status_code == 204
    assert job_status(owner_conn, ids[0]) == "todo"  # clips 0 and 3 still get made
    statuses = dict(owner_conn.execute("SELECT id::text, status FROM generations").fetchall())
    assert [statuses[i] for i in ids] == ["pending", "cancelled", "cancelled", "pending"]

    await client.post(f"/v1/generations/{ids[0]}/cancel", headers=client.alice)
    assert job_status(owner_conn, ids[0]) == "todo"
    await client.delete(f"/v1/generations/{ids[3]}", headers=client.alice)
    assert job_status(owner_conn, ids[0]) == "cancelled"  # nothing left to make


async def test_delete_hides_the_item_everywhere_at_once(client, owner_conn):
    generation_id = (await client.post("/v1/generations", json=GOOD, headers=client.alice)).json()["ids"][0]
    assert (await client.delete(f"/v1/generations/{generation_id}", headers=client.alice)).status_code == 204
    assert (await client.get(f"/v1/generations/{generation_id}", headers=client.alice)).status_code == 404
    assert (await client.get(f"/v1/generations/{generation_id}", headers=client.admin)).status_code == 404
    listed = (await client.get("/v1/generations", headers=client.alice)).json()["items"]
    assert generation_id not in [item["id"] for item in listed]
    assert owner_conn.execute("SELECT deleted_at IS NOT NULL FROM generations").fetchone()[0]


async def test_listing_is_own_newest_first_with_cursor_and_filters(client):
    ids = []
    for prompt in ("piano", "guitar, minor", "piano, minor", "organ"):
        body = {**GOOD, "prompt": prompt}
        ids.append((await client.post("/v1/generations", json=body, headers=client.alice)).json()["ids"][0])
    await client.post("/v1/generations", json=GOOD, headers=client.bob)

    first = (await client.get("/v1/generations?limit=3", headers=client.alice)).json()
    assert [item["id"] for item in first["items"]] == ids[::-1][:3]
    second = (await client.get(f"/v1/generations?limit=3&cursor={first['next_cursor']}", headers=client.alice)).json()
    assert [item["id"] for item in second["items"]] == [ids[0]] and second["next_cursor"] is None

    minor = (await client.get("/v1/generations?tags=minor", headers=client.alice)).json()["items"]
    assert {item["id"] for item in minor} == {ids[1], ids[2]}
    both = (await client.get("/v1/generations?tags=minor&tags=piano", headers=client.alice)).json()["items"]
    assert [item["id"] for item in both] == [ids[2]]
    pending = (await client.get("/v1/generations?status=pending&model=tiny", headers=client.alice)).json()
    assert len(pending["items"]) == 4


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("kind=remix", "kind"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=garbage", "cursor"),
        ("created_after=yesterday", "created_after"),
        ("model=nope", "model"),
    ],
)
async def test_bad_list_parameters_name_the_field(client, query, field):
    response = await client.get(f"/v1/generations?{query}", headers=client.alice)
    assert response.status_code in (400, 422), response.text
    problem = response.json()
    assert any(field in (e["field"] or "") or field in (e["message"] or "") for e in problem.get("errors") or []) or (
        field in problem["detail"]
    )


async def test_unknown_generation_is_404(client):
    response = await client.get(f"/v1/generations/{uuid.uuid4()}", headers=client.alice)
    assert response.status_code == 404 and response.json()["title"] == "Not Found"


async def test_a_generation_records_the_effective_steps_guidance_and_seed(client, owner_conn, tiny_model):
    """Omitted steps, guidance and seed are filled in at creation: the model's recorded defaults, a drawn seed."""
    config = tiny_model["pipeline"].config
    assert config.default_steps != ModelConfig.default_steps  # the checkpoint's own default, not the class's

    async def create(prompt: str) -> dict:
        accepted = await client.post("/v1/generations", json={"prompt": prompt}, headers=client.alice)
        assert accepted.status_code == 202, accepted.text
        generation_id = accepted.json()["ids"][0]
        shown = (await client.get(f"/v1/generations/{generation_id}", headers=client.alice)).json()
        row = owner_conn.execute("SELECT params, seed FROM generations WHERE id = %s", (generation_id,)).fetchone()
        assert (shown["params"], shown["seed"]) == tuple(row)
        assert isinstance(shown["seed"], int)
        return shown["params"]

    params = await create("guitar, major")
    assert (params["steps"], params["guidance_scale"]) == (config.default_steps, config.default_guidance)

    patch = {"metadata": {"defaults": {"steps": 7, "guidance_scale": 2.5}}}
    assert (await client.patch("/v1/models/tiny", json=patch, headers=client.admin)).status_code == 200
    params = await create("piano, minor")
    assert (params["steps"], params["guidance_scale"]) == (7, 2.5)

    owner_conn.execute("UPDATE models SET metadata = '{}'")  # a row the registry wrote before it recorded defaults
    params = await create("piano, minor")
    assert (params["steps"], params["guidance_scale"]) == (ModelConfig.default_steps, ModelConfig.default_guidance)

"""Style transfer and variants batches: validation, batch progress and cancellation (no worker), and the whole
path through a real worker and the tiny model (kinds, parents, latents stored, lineage)."""

from __future__ import annotations

import asyncio
import io
import time
import uuid

import numpy as np
import pytest
import soundfile as sf

from tests.integration.api_helpers import api_client, api_settings, bearer_for, wait_until_finished
from tests.integration.search.conftest import exact_ids, visible_to


@pytest.fixture
async def client(database, catalogue, tmp_path):
    settings = api_settings(database, tmp_path, max_variants_per_batch=12, variant_chunk_size=3)
    async with api_client(database, settings, worker=False) as client:
        client.alice = await bearer_for(client, "alice", "creator")
        client.reader = await bearer_for(client, "alice", "reader")
        client.bob = await bearer_for(client, "bob", "creator")
        client.catalogue = catalogue
        yield client


def count(owner_conn, where: str) -> int:
    return owner_conn.execute(f"SELECT count(*) FROM generations WHERE {where}").fetchone()[0]


def mine(client):
    return [i for i in visible_to(client.catalogue.items, "alice") if i.owner == "alice"]


async def test_style_transfer_picks_the_ranked_neighbour(client, owner_conn):
    source = mine(client)[0]
    visible = visible_to(client.catalogue.items, "alice")
    response = await client.post(
        f"/v1/generations/{source.id}/style-transfer",
        headers=client.alice,
        json={"neighbor_rank": 3, "strength": 0.6, "seed": 5},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["kind"] == "style_transfer" and body["status"] == "pending" and body["seed"] == 5
    assert body["parent_id"] == str(source.id)
    assert body["neighbor_id"] == str(exact_ids(visible, source.vector, 3, exclude=[source.id])[2])
    assert body["params"]["strength"] == 0.6 and body["params"]["neighbor_rank"] == 3
    job = owner_conn.execute("SELECT job_id FROM generations WHERE id = %s", (body["id"],)).fetchone()[0]
    assert job is not None

    filtered = await client.post(
        f"/v1/generations/{source.id}/style-transfer", headers=client.alice, json={"filter": {"tags_all": ["minor"]}}
    )
    minor = [i for i in visible if "minor" in i.tags]
    assert filtered.json()["neighbor_id"] == str(exact_ids(minor, source.vector, 1, exclude=[source.id])[0])


async def test_near_duplicates_are_skipped(client, owner_conn, tiny_model):
    source = mine(client)[1]
    visible = visible_to(client.catalogue.items, "alice")
    nearest = exact_ids(visible, source.vector, 2, exclude=[source.id])
    owner_conn.execute(
        "UPDATE latent_embeddings SET embedding = (SELECT embedding FROM latent_embeddings WHERE generation_id = %s)"
        " WHERE generation_id = %s",
        (source.id, nearest[0]),
    )
    response = await client.post(f"/v1/generations/{source.id}/style-transfer", headers=client.alice, json={})
    assert response.json()["neighbor_id"] == str(nearest[1])
    # no strength given: the checkpoint's default is recorded; a transfer runs no sampler steps
    params = response.json()["params"]
    assert (params["strength"], params["steps"]) == (tiny_model["pipeline"].config.default_strength, 0)


async def test_variants_batch_progress_and_cancel(client, owner_conn, tiny_model):
    sources = mine(client)[:3]
    response = await client.post(
        "/v1/variants",
        headers=client.alice,
        json={"ids": [str(s.id) for s in sources], "n_per_source": 4, "variance": 0.4, "seed": 100},
    )
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["status"] == "pending" and batch["total"] == 12 and batch["pending"] == 12
    rows = owner_conn.execute(
        "SELECT parent_id, seed, kind, job_id, params->>'variance', params->'steps', params->'guidance_scale' "
        "FROM generations WHERE batch_id = %s ORDER BY seed",
        (batch["id"],),
    ).fetchall()
    # no steps given: each row records the checkpoint's default, and the guidance variants are denoised with
    assert {(r[5], r[6]) for r in rows} == {(tiny_model["pipeline"].config.default_steps, 1.0)}
    assert [r[1] for r in rows] == list(range(100, 112))
    assert [r[0] for r in rows] == [s.id for s in sources for _ in range(4)]
    assert {r[2] for r in rows} == {"variant"} and {r[4] for r in rows} == {"0.4"}
    assert len({r[3] for r in rows}) == 4  # chunks of 3 rows, one job each

    first, second = batch["generation_ids"][:2]
    owner_conn.execute("UPDATE generations SET status = 'succeeded' WHERE id = %s", (first,))
    owner_conn.execute("UPDATE generations SET status = 'failed' WHERE id = %s", (second,))
    progress = (await client.get(batch["url"], headers=client.reader)).json()
    assert (progress["status"], progress["done"], progress["failed"], progress["pending"]) == ("running", 1, 1, 10)
    assert (await client.get(batch["url"], headers=client.bob)).status_code == 404

    cancelled = await client.post(f"{batch['url']}/cancel", headers=client.alice)
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["status"], body["cancelled"], body["done"], body["failed"]) == ("cancelled", 10, 1, 1)
    statuses = owner_conn.execute(
        "SELECT DISTINCT j.status FROM procrastinate_jobs j JOIN generations g ON g.job_id = j.id "
        "WHERE g.batch_id = %s",
        (batch["id"],),
    ).fetchall()
    assert {s[0] for s in statuses} == {"cancelled"}
    again = await client.post(f"{batch['url']}/cancel", headers=client.alice)
    assert again.status_code == 409


async def test_variants_from_a_search(client, owner_conn):
    source = mine(client)[2]
    search = {"generation_id": str(source.id), "limit": 5, "filter": {"mine": True}}
    response = await client.post("/v1/variants", headers=client.alice, json={"search": search, "n_per_source": 2})
    assert response.status_code == 202, response.text
    expected = exact_ids(mine(client), source.vector, 5, exclude=[source.id])
    assert response.json()["params"]["sources"] == [str(i) for i in expected]
    assert response.json()["total"] == 10


BAD_VARIANTS = [
    ({"n_per_source": 4}, "sources"),
    ({"ids": [], "n_per_source": 1}, "ids"),
    ({"n_per_source": 17}, "n_per_source"),
    ({"n_per_source": 0}, "n_per_source"),
    ({"n_per_source": 5}, "n_per_source"),  # 3 sources x 5 = 15 > the cap of 12
    ({"variance": 1.5}, "variance"),
    ({"variance": -0.1}, "variance"),
]


@pytest.mark.parametrize(("extra", "field"), BAD_VARIANTS)
async def test_bad_variants_store_nothing(client, owner_conn, extra, field):
    body = {"ids": [str(s.id) for s in mine(client)[:3]], **extra}
    if field == "sources":
        body["search"] = {"vector": [0.1] * 512}
    response = await client.post("/v1/variants", headers=client.alice, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    assert count(owner_conn, "kind = 'variant'") == 0
    assert owner_conn.execute("SELECT count(*) FROM batches").fetchone()[0] == 0


async def test_a_batch_the_queue_can_never_hold_is_422_not_429(database, catalogue, tmp_path, owner_conn):
    settings = api_settings(database, tmp_path, queue_limit=10, max_variants_per_batch=12)
    sources = [str(i.id) for i in visible_to(catalogue.items, "alice") if i.owner == "alice"][:3]
    async with api_client(database, settings, worker=False) as client:
        alice = await bearer_for(client, "alice", "creator")
        too_many = await client.post("/v1/variants", headers=alice, json={"ids": sources, "n_per_source": 4})
        fits = await client.post("/v1/variants", headers=alice, json={"ids": sources, "n_per_source": 3})
    assert too_many.status_code == 422 and "retry-after" not in too_many.headers, too_many.text
    problem = too_many.json()
    assert problem["errors"][0]["field"] == "n_per_source"
    assert "makes 12 generations" in problem["detail"] and "SOUNDALIKE_JOBS_QUEUE_LIMIT" in problem["detail"]
    assert fits.status_code == 202 and count(owner_conn, "kind = 'variant'") == 9


async def test_bad_transfers_store_nothing(client, owner_conn):
    source, other = mine(client)[0], mine(client)[1]
    twin = client.catalogue.twins[0]
    private_of_bob = next(i for i in client.catalogue.items if i.owner == "bob" and i.visibility == "private")
    cases = [
        ({"strength": 1.5}, 422, "strength"),
        ({"strength": -0.5}, 422, "strength"),
        ({"neighbor_id": str(other.id), "neighbor_rank": 2}, 422, "neighbor_rank"),
        ({"neighbor_id": str(twin.id)}, 422, "neighbor_id"),
        ({"neighbor_id": str(source.id)}, 422, "neighbor_id"),
        ({"neighbor_rank": 0}, 422, "neighbor_rank"),
        ({"neighbor_rank": 3, "filter": {"tags_all": ["no-such-tag"]}}, 422, "neighbor_rank"),
        ({"neighbor_id": str(private_of_bob.id)}, 404, None),
        ({"neighbor_id": str(uuid.uuid4())}, 404, None),
    ]
    for body, status, field in cases:
        response = await client.post(f"/v1/generations/{source.id}/style-transfer", headers=client.alice, json=body)
        assert response.status_code == status, (body, response.text)
        if field:
            assert response.json()["errors"][0]["field"] == field, body
    missing = await client.post(f"/v1/generations/{uuid.uuid4()}/style-transfer", headers=client.alice, json={})
    assert missing.status_code == 404
    reader = await client.post(f"/v1/generations/{source.id}/style-transfer", headers=client.reader, json={})
    assert reader.status_code == 403
    assert count(owner_conn, "kind = 'style_transfer'") == 0


async def wait_batch(client, headers, url, timeout=300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = (await client.get(url, headers=headers)).json()
        if body["status"] not in ("pending", "running"):
            return body
        await asyncio.sleep(0.3)
    raise AssertionError(f"batch {url} did not finish")


@pytest.mark.slow
async def test_transfer_and_variants_through_a_real_worker(database, tiny_model, tmp_path, owner_conn):
    pipeline = tiny_model["pipeline"]
    settings = api_settings(database, tmp_path, variant_chunk_size=4)
    async with api_client(database, settings, worker=True) as client:
        alice = await bearer_for(client, "alice", "creator")
        request = {"prompt": "piano, minor, 90 bpm", "seed": 1, "steps": 4, "batch_size": 3}
        made = await client.post("/v1/generations?wait=60", headers=alice, json=request)
        assert made.status_code == 200, made.text
        a, b, c = (item["id"] for item in made.json()["items"])

        def latent(gid):
            row = owner_conn.execute("SELECT embedding FROM latent_embeddings WHERE generation_id = %s", (gid,))
            return row.fetchone()[0].to_numpy()

        async def joint(gid):
            """The parent's joint latent as the worker sees it: re-encoded from its stored audio."""
            audio = await client.get(f"/v1/generations/{gid}/audio", headers=alice)
            clip, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
            return pipeline.encode_joint(clip, rate)

        transfer = await client.post(
            f"/v1/generations/{a}/style-transfer",
            headers=alice,
            json={"neighbor_id": c, "strength": 0.7, "seed": 9, "steps": 4},
        )
        assert transfer.status_code == 202, transfer.text
        done = await wait_until_finished(client, alice, transfer.json()["id"])
        assert done["status"] == "succeeded", done["error"]
        assert done["links"]["audio"] and done["parent_id"] == a and done["neighbor_id"] == c
        expected = pipeline.searchable(pipeline.transfer(await joint(a), latent(c), 0.7))
        np.testing.assert_allclose(latent(done["id"]), expected, atol=1e-4)

        batch = await client.post(
            "/v1/variants",
            headers=alice,
            json={"ids": [a, b], "n_per_source": 3, "variance": 0.4, "seed": 50, "steps": 4},
        )
        assert batch.status_code == 202, batch.text
        finished = await wait_batch(client, alice, batch.json()["url"])
        assert (finished["status"], finished["done"], finished["total"]) == ("succeeded", 6, 6)
        rows = owner_conn.execute(
            "SELECT g.id, g.parent_id, g.seed, g.kind FROM generations g JOIN latent_embeddings l "
            "ON l.generation_id = g.id JOIN audio_assets s ON s.generation_id = g.id WHERE g.batch_id = %s "
            "ORDER BY g.seed",
            (finished["id"],),
        ).fetchall()
        assert len(rows) == 6 and {r[3] for r in rows} == {"variant"}
        for parent in (a, b):
            mine_rows = [r for r in rows if str(r[1]) == parent]
            expected = pipeline.searchable(
                pipeline.variants(await joint(parent), 0.4, [r[2] for r in mine_rows], steps=4)
            )
            for row, want in zip(mine_rows, expected, strict=True):
                np.testing.assert_allclose(latent(row[0]), want, atol=1e-4)

        found = (await client.get(f"/v1/generations/{a}/lineage", headers=alice)).json()
        relations = {(d["relation"], d["generation"]["id"]) for d in found["descendants"]}
        assert ("style_transfer", done["id"]) in relations
        assert {g for r, g in relations if r == "variant"} == {str(r[0]) for r in rows if str(r[1]) == a}
        of_transfer = (await client.get(f"/v1/generations/{done['id']}/lineage", headers=alice)).json()
        assert [(x["relation"], x["generation"]["id"]) for x in of_transfer["ancestors"]] == [
            ("parent", a),
            ("style_neighbor", c),
        ]

        # variants of a variant: two generations deep
        grand = await client.post(
            "/v1/variants", headers=alice, json={"ids": [str(rows[0][0])], "n_per_source": 1, "steps": 4}
        )
        await wait_batch(client, alice, grand.json()["url"])
        deep = (await client.get(f"/v1/generations/{a}/lineage", headers=alice)).json()
        assert max(d["depth"] for d in deep["descendants"]) == 2
        searchable = await client.post(
            "/v1/search", headers=alice, json={"generation_id": a, "limit": 20, "filter": {"kind": "variant"}}
        )
        assert {i["kind"] for i in searchable.json()["items"]} == {"variant"}
        assert len(searchable.json()["items"]) == 7


@pytest.mark.slow
def give_audio(owner_conn, pipeline, blob_dir, generation_ids: list[str]) -> None:
    """Store generated audio for catalogue items (they only have latents): a variant re-encodes its source's
    audio to get the melody back."""
    from service.domain.catalogue.audio import to_wav
    from service.storage import BlobStore

    store = BlobStore(blob_dir, blob_dir.parent / "archive")
    rate = pipeline.config.sample_rate
    clips = pipeline.decode(pipeline.generate(["piano"] * len(generation_ids), list(range(len(generation_ids))), 4))
    for generation_id, clip in zip(generation_ids, clips, strict=True):
        blob = store.put(to_wav(clip, rate), ".wav")
        owner_conn.execute(
            "INSERT INTO audio_assets (generation_id, uri, sha256, bytes, sample_rate, duration_seconds, format) "
            "VALUES (%s, %s, %s, %s, %s, %s, 'wav')",
            (generation_id, blob.uri, blob.sha256, blob.bytes, rate, len(clip) / rate),
        )


async def test_variants_survive_a_killed_worker_without_duplicates(
    database, catalogue, tiny_model, tmp_path, owner_conn
):
    """A worker SIGKILLed mid-chunk: the sweep retries the job, finished rows are skipped, each variant is made
    exactly once."""
    import signal

    from tests.integration.test_worker_recovery import start_worker, wait_for_status

    settings = api_settings(database, tmp_path, variant_chunk_size=4)
    sources = [str(i.id) for i in visible_to(catalogue.items, "alice") if i.owner == "alice" and not i.deleted][:2]
    give_audio(owner_conn, tiny_model["pipeline"], tmp_path / "blobs", sources)
    async with api_client(database, settings, worker=False) as client:
        alice = await bearer_for(client, "alice", "creator")
        batch = (
            await client.post(
                "/v1/variants",
                headers=alice,
                json={"ids": sources, "n_per_source": 4, "variance": 1.0, "steps": 200, "seed": 3},
            )
        ).json()
        first = batch["generation_ids"][0]
        doomed = start_worker(database, tmp_path, "doomed.log")
        try:
            await wait_for_status(client, alice, first, "running")
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
        finally:
            doomed.kill()
        assert (await client.get(batch["url"], headers=alice)).json()["running"] > 0

        rescuer = start_worker(database, tmp_path, "rescuer.log")
        try:
            finished = await wait_batch(client, alice, batch["url"])
        finally:
            rescuer.send_signal(signal.SIGINT)
            rescuer.wait(timeout=30)
    assert (finished["status"], finished["done"]) == ("succeeded", 8)
    latents = owner_conn.execute(
        "SELECT count(*), count(DISTINCT l.generation_id) FROM latent_embeddings l JOIN generations g "
        "ON g.id = l.generation_id WHERE g.batch_id = %s",
        (batch["id"],),
    ).fetchone()
    assert latents == (8, 8)
    assert "retrying" in (tmp_path / "rescuer.log").read_text()

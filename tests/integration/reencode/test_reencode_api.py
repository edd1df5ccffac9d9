"""Re-encoding a catalogue into another model's space through the API, with the in-process worker: progress,
exact latents in the new space, search and visibility per space, lineage untouched, and every bad request a
clear 4xx."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from tests.integration.api_helpers import wait_until_finished
from tests.integration.reencode.conftest import RATE, import_tone, latents_by_model, tone, wait_for_batch


async def search(client, headers, **body) -> dict:
    response = await client.post("/v1/search", json={"limit": 20, **body}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def found(body) -> set[str]:
    return {item["id"] for item in body["items"]}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.slow
async def test_reencode_moves_the_catalogue_into_the_new_space(client, owner_conn):
    old, new = client.models["old"], client.models["new"]
    imported = [await import_tone(client, client.alice, i, "public" if i % 2 else "private") for i in range(5)]
    deleted = await import_tone(client, client.alice, 9)
    assert (await client.delete(f"/v1/generations/{deleted}", headers=client.alice)).status_code == 204
    made = (
        await client.post("/v1/variants", json={"ids": [imported[0]], "n_per_source": 2}, headers=client.alice)
    ).json()
    assert (await wait_for_batch(client, client.alice, made["id"]))["status"] == "succeeded"
    lineage_before = (await client.get(f"/v1/generations/{imported[0]}/lineage", headers=client.alice)).json()
    probe = new["pipeline"].encode(tone(0)[1], RATE)
    assert found(await search(client, client.admin, vector=probe.tolist(), model="next")) == set()

    response = await client.post("/v1/models/next/reencode", json={"from": "tiny"}, headers=client.admin)
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["kind"] == "reencode" and batch["total"] == 7 and batch["params"]["chunks"] == 3
    done = await wait_for_batch(client, client.admin, batch["id"])
    assert (done["status"], done["done"], done["failed"], done["pending"]) == ("succeeded", 7, 0, 0)

    catalogue = set(imported) | set(made["generation_ids"])
    in_new, in_old = latents_by_model(owner_conn, new["id"]), latents_by_model(owner_conn, old["id"])
    assert set(in_new) == catalogue and catalogue <= set(in_old), "every live item, in both spaces, once each"
    for index, generation_id in enumerate(imported):
        assert cosine(in_new[generation_id], new["pipeline"].encode(tone(index)[1], RATE)) > 0.999
    by_vector = await search(client, client.admin, vector=probe.tolist(), model="next")
    assert found(by_vector) == catalogue and by_vector["items"][0]["id"] == imported[0]
    public = {imported[1], imported[3]}
    assert found(await search(client, client.rita, vector=probe.tolist(), model="next")) == public
    by_id = await search(client, client.alice, generation_id=imported[1], model="next")
    assert by_id["model"] == "next" and found(by_id) == catalogue - {imported[1]}
    assert (await search(client, client.alice, generation_id=imported[1]))["model"] == "tiny", "the default's space"
    lineage_after = (await client.get(f"/v1/generations/{imported[0]}/lineage", headers=client.alice)).json()
    assert lineage_after == lineage_before

    late = await import_tone(client, client.alice, 11)
    assert late in latents_by_model(owner_conn, new["id"]), "the new space follows the old one after the batch"
    body = {"prompt": "piano, minor", "seed": 3, "steps": 10, "batch_size": 1}
    [generated] = (await client.post("/v1/generations", json=body, headers=client.alice)).json()["ids"]
    assert (await wait_until_finished(client, client.alice, generated))["status"] == "succeeded"
    wav = (await client.get(f"/v1/generations/{generated}/audio", headers=client.alice)).content
    clip, rate = sf.read(io.BytesIO(wav), dtype="float32")
    in_new = latents_by_model(owner_conn, new["id"])
    assert cosine(in_new[generated], new["pipeline"].encode(clip, rate)) > 0.99, "a generation made after it too"
    again = await client.post("/v1/models/next/reencode", json={"from": "tiny"}, headers=client.admin)
    assert again.status_code == 409 and "nothing to re-encode" in again.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/models/nope/reencode", {"from": "tiny"}, 404, None),
        ("/v1/models/next/reencode", {"from": "nope"}, 422, "from"),
        ("/v1/models/next/reencode", {"from": "next"}, 422, "from"),
        ("/v1/models/next/reencode", {}, 400, None),
        ("/v1/models/next/reencode", {"from": "tiny", "everything": True}, 400, None),
        ("/v1/models/next/recode", {"from": "tiny"}, 404, None),
    ],
)
async def test_bad_requests_are_clear_4xx(idle_client, path, body, status, field):
    await import_tone(idle_client, idle_client.alice, 0)
    response = await idle_client.post(path, json=body, headers=idle_client.admin)
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json") and problem["detail"]
    if field:
        assert problem["errors"][0]["field"] == field


async def test_archived_target_and_non_admins_are_refused(idle_client, owner_conn):
    await import_tone(idle_client, idle_client.alice, 0)
    creator = await idle_client.post("/v1/models/next/reencode", json={"from": "tiny"}, headers=idle_client.alice)
    assert creator.status_code == 403
    owner_conn.execute("UPDATE models SET status = 'ARCHIVED' WHERE alias = 'next'")
    archived = await idle_client.post("/v1/models/next/reencode", json={"from": "tiny"}, headers=idle_client.admin)
    assert archived.status_code == 409 and "ARCHIVED" in archived.json()["detail"]


async def test_cancel_stops_a_pending_batch_and_frees_the_target(idle_client, owner_conn):
    for index in range(4):
        await import_tone(idle_client, idle_client.alice, index)
    admin = idle_client.admin
    batch = (await idle_client.post("/v1/models/next/reencode", json={"from": "tiny"}, headers=admin)).json()
    assert (batch["status"], batch["pending"], batch["generation_ids"]) == ("pending", 4, [])
    second = await idle_client.post("/v1/models/next/reencode", json={"from": "tiny"}, headers=admin)
    assert second.status_code == 409 and batch["id"] in second.json()["detail"]

    cancelled = await idle_client.post(f"/v1/batches/{batch['id']}/cancel", headers=admin)
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["cancelled"], cancelled.json()["pending"]) == (
        "cancelled",
        4,
        0,
    )
    again = await idle_client.post(f"/v1/batches/{batch['id']}/cancel", headers=admin)
    assert again.status_code == 409
    assert latents_by_model(owner_conn, idle_client.models["new"]["id"]) == {}
    late = await import_tone(idle_client, idle_client.alice, 5)
    assert late not in latents_by_model(owner_conn, idle_client.models["new"]["id"]), "a cancelled batch leads nowhere"
    retry = await idle_client.post("/v1/models/next/reencode", json={"from": "tiny"}, headers=admin)
    assert retry.status_code == 202 and retry.json()["total"] == 5

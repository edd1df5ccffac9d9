"""A re-encode batch through real worker processes: one is SIGKILLed mid-chunk (its transaction holds the
chunk's latents, uncommitted), an import and a generation land while the batch runs (each encodes itself in
both spaces, whether it finishes before or after the batch), a second worker finishes the batch. Every item ends
with exactly one latent per space."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.integration.api_helpers import api_client, api_settings, bearer_for, wait_until_finished
from tests.integration.reencode.conftest import import_tone, latents_by_model, wait_for_batch
from tests.integration.test_worker_recovery import start_worker

pytestmark = pytest.mark.slow
FAILPOINT = "reencode:before-commit"


async def wait_for_line(path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path.name} never said {text!r}:\n{path.read_text() if path.exists() else ''}")


def latent_counts(owner_conn, model_id: int) -> tuple[int, int]:
    return owner_conn.execute(
        "SELECT count(*), count(DISTINCT generation_id) FROM latent_embeddings WHERE model_id = %s", (model_id,)
    ).fetchone()


async def test_sigkilled_worker_and_arrivals_during_the_batch(database, two_models, tmp_path, owner_conn):
    new_id = two_models["new"]["id"]
    settings = api_settings(database, tmp_path, reencode_chunk_size=4)
    async with api_client(database, settings, worker=False) as client:
        alice, admin = await bearer_for(client, "alice", "creator"), await bearer_for(client, "root", "admin")
        catalogue = [await import_tone(client, alice, i) for i in range(10)]
        batch = (await client.post("/v1/models/next/reencode", json={"from": "tiny"}, headers=admin)).json()
        assert (batch["total"], batch["params"]["chunks"]) == (10, 3)

        doomed = start_worker(database, tmp_path, "doomed.log", SOUNDALIKE_FAILPOINT=FAILPOINT)
        try:
            await wait_for_line(tmp_path / "doomed.log", f"failpoint {FAILPOINT} reached")
            running = (await client.get(f"/v1/batches/{batch['id']}", headers=admin)).json()
            assert running["pending"] == 10, "the first chunk is encoded and copied but not committed"
            during_import = await import_tone(client, alice, 20)
            assert during_import in latents_by_model(owner_conn, new_id), "an import during the batch: both spaces"
            body = {"prompt": "strings, minor", "seed": 5, "steps": 10, "batch_size": 1}
            [generated] = (await client.post("/v1/generations", json=body, headers=alice)).json()["ids"]
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
        finally:
            doomed.kill()
        assert latent_counts(owner_conn, new_id) == (1, 1), "the killed chunk left nothing behind"

        rescuer = start_worker(database, tmp_path, "rescuer.log")
        try:
            assert (await wait_until_finished(client, alice, generated, timeout=240))["status"] == "succeeded"
            done = await wait_for_batch(client, admin, batch["id"])
        finally:
            rescuer.send_signal(signal.SIGINT)
            rescuer.wait(timeout=30)

    assert (done["status"], done["failed"]) == ("succeeded", 0)
    assert done["total"] == done["done"] == 10, "the generation encoded itself in the new space: not listed"
    assert set(latents_by_model(owner_conn, new_id)) == {*catalogue, during_import, generated}
    assert latent_counts(owner_conn, new_id) == (12, 12), "one latent per item in the new space, no duplicates"
    assert "retrying" in (tmp_path / "rescuer.log").read_text()

"""A worker killed mid-job (SIGKILL) leaves a job that the stalled-job sweep retries to completion."""

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from tests.integration.api_helpers import api_client, api_settings, bearer_for, wait_until_finished

pytestmark = pytest.mark.slow


def start_worker(database, tmp_path, log_name: str, **extra_env: str) -> subprocess.Popen:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SOUNDALIKE_")},
        "SOUNDALIKE_DATABASE_URL": database.app_url,
        "SOUNDALIKE_STORAGE_BLOB_DIR": str(tmp_path / "blobs"),
        "SOUNDALIKE_STORAGE_ARCHIVE_DIR": str(tmp_path / "archive"),
        "SOUNDALIKE_JOBS_HEARTBEAT_SECONDS": "1",
        "SOUNDALIKE_JOBS_STALLED_AFTER_SECONDS": "3",
        "SOUNDALIKE_JOBS_SWEEP_CRON": "* * * * * *",
        **extra_env,
    }
    log = (tmp_path / log_name).open("w")
    return subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env, stdout=log, stderr=log)


async def wait_for_status(client, headers, generation_id, status, timeout=120):
    for _ in range(int(timeout / 0.05)):
        body = (await client.get(f"/v1/generations/{generation_id}", headers=headers)).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"generation never reached {status}")


async def test_sigkill_mid_job_is_retried_and_completes(database, tiny_model, tmp_path, owner_conn):
    settings = api_settings(database, tmp_path)
    async with api_client(database, settings, worker=False) as client:
        alice = await bearer_for(client, "alice", "creator")
        body = {"prompt": "strings, minor", "seed": 3, "steps": 200, "batch_size": 8}
        ids = (await client.post("/v1/generations", json=body, headers=alice)).json()["ids"]

        doomed = start_worker(database, tmp_path, "doomed.log")
        try:
            await wait_for_status(client, alice, ids[0], "running")
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
        finally:
            doomed.kill()
        assert (await client.get(f"/v1/generations/{ids[0]}", headers=alice)).json()["status"] == "running"

        rescuer = start_worker(database, tmp_path, "rescuer.log")
        try:
            for generation_id in ids:
                done = await wait_until_finished(client, alice, generation_id, timeout=300)
                assert done["status"] == "succeeded", done["error"]
        finally:
            rescuer.send_signal(signal.SIGINT)
            rescuer.wait(timeout=30)

    latents = owner_conn.execute(
        "SELECT count(*), count(DISTINCT generation_id) FROM latent_embeddings WHERE generation_id = ANY(%s::uuid[])",
        (ids,),
    ).fetchone()
    assert latents == (8, 8), "each generation has exactly one latent"
    assert "retrying" in (tmp_path / "rescuer.log").read_text()

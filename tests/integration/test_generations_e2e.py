"""Generate → poll → audio → latent through the real app, a real worker, the real database and tiny model."""

import hashlib
import io

import numpy as np
import pytest
import soundfile as sf

from tests.integration.api_helpers import api_client, api_settings, bearer_for, wait_until_finished

pytestmark = pytest.mark.slow

REQUEST = {"prompt": "piano, minor, 90 bpm", "seed": 7, "steps": 4, "guidance_scale": 2.5, "batch_size": 2}


async def test_generate_poll_audio_latent(database, tiny_model, tmp_path, owner_conn):
    settings = api_settings(database, tmp_path)
    async with api_client(database, settings, worker=True) as client:
        alice = await bearer_for(client, "alice", "creator")
        accepted = await client.post("/v1/generations", json=REQUEST, headers=alice)
        assert accepted.status_code == 202, accepted.text
        body = accepted.json()
        assert body["seed"] == 7 and len(body["ids"]) == 2
        assert body["status_urls"] == [f"/v1/generations/{i}" for i in body["ids"]]

        pipeline = tiny_model["pipeline"]
        expected = pipeline.searchable(
            pipeline.generate([REQUEST["prompt"]] * 2, [7, 8], steps=4, guidance_scale=2.5)
        )  # the stored latent is the global part of the joint latent
        for index, generation_id in enumerate(body["ids"]):
            done = await wait_until_finished(client, alice, generation_id)
            assert done["status"] == "succeeded", done["error"]
            assert done["model"]["alias"] == "tiny" and done["seed"] == 7 + index
            assert done["tags"] == ["piano", "minor", "90 bpm"]
            assert done["timings"]["run_seconds"] is not None and done["timings"]["total_seconds"] >= 0

            audio = await client.get(done["links"]["audio"], headers=alice)
            assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
            assert int(audio.headers["content-length"]) == len(audio.content)
            clip, rate = sf.read(io.BytesIO(audio.content))
            assert rate == pipeline.config.sample_rate
            assert len(clip) == int(pipeline.config.sample_rate * pipeline.config.clip_seconds)
            stored = owner_conn.execute(
                "SELECT sha256, bytes FROM audio_assets WHERE generation_id = %s", (generation_id,)
            ).fetchone()
            assert stored == (hashlib.sha256(audio.content).hexdigest(), len(audio.content))

            latent = (await client.get(done["links"]["latent"], headers=alice)).json()
            values = np.array(latent["values"], dtype=np.float32)
            assert latent["dim"] == 512 and np.isfinite(values).all()
            np.testing.assert_array_equal(values, expected[index])
            row = owner_conn.execute(
                "SELECT embedding, model_id FROM latent_embeddings WHERE generation_id = %s", (generation_id,)
            ).fetchone()
            np.testing.assert_array_equal(row[0].to_numpy(), expected[index])
            assert row[1] == tiny_model["id"]


async def test_wait_returns_the_finished_result(database, tiny_model, tmp_path):
    async with api_client(database, api_settings(database, tmp_path), worker=True) as client:
        alice = await bearer_for(client, "alice", "creator")
        response = await client.post("/v1/generations?wait=60", json={**REQUEST, "batch_size": 1}, headers=alice)
        assert response.status_code == 200, response.text
        [item] = response.json()["items"]
        assert item["status"] == "succeeded" and item["links"]["audio"]


async def test_flac_and_byte_ranges(database, tiny_model, tmp_path):
    async with api_client(database, api_settings(database, tmp_path), worker=True) as client:
        alice = await bearer_for(client, "alice", "creator")
        [item] = (
            await client.post("/v1/generations?wait=60", json={**REQUEST, "batch_size": 1}, headers=alice)
        ).json()["items"]
        url = item["links"]["audio"]
        whole = (await client.get(url, headers=alice)).content

        flac = await client.get(url, headers={**alice, "Accept": "audio/flac"})
        assert flac.headers["content-type"] == "audio/flac"
        decoded, rate = sf.read(io.BytesIO(flac.content))
        reference, _ = sf.read(io.BytesIO(whole))
        np.testing.assert_allclose(decoded, reference, atol=1e-4)

        part = await client.get(url, headers={**alice, "Range": "bytes=10-99"})
        assert part.status_code == 206 and part.content == whole[10:100]
        assert part.headers["content-range"] == f"bytes 10-99/{len(whole)}"
        tail = await client.get(url, headers={**alice, "Range": "bytes=-20"})
        assert tail.status_code == 206 and tail.content == whole[-20:]
        bad = await client.get(url, headers={**alice, "Range": f"bytes={len(whole) + 5}-"})
        assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(whole)}"


async def test_siblings_of_a_clip_cancelled_while_pending_are_still_made(database, tiny_model, tmp_path):
    settings = api_settings(database, tmp_path)
    async with api_client(database, settings, worker=False) as client:  # no worker yet: the clips stay pending
        alice = await bearer_for(client, "alice", "creator")
        ids = (await client.post("/v1/generations", json={**REQUEST, "batch_size": 3}, headers=alice)).json()["ids"]
        assert (await client.post(f"/v1/generations/{ids[1]}/cancel", headers=alice)).status_code == 200
    async with api_client(database, settings, worker=True) as client:
        finished = [await wait_until_finished(client, alice, i, timeout=120) for i in ids]
    assert [item["status"] for item in finished] == ["succeeded", "cancelled", "succeeded"]
    assert finished[1]["links"]["audio"] is None and finished[0]["links"]["audio"] is not None

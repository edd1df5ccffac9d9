"""service.client against the real app on 127.0.0.1: typed results, problem-details exceptions, events, waiting
through SSE (statuses changed by SQL, as a worker would), uploads, webhooks; sync and async."""

from __future__ import annotations

import asyncio
import io
import uuid

import numpy as np
import pytest
import soundfile as sf

from service.app import create_app
from service.client import AsyncClient, Client, Conflict, InvalidRequest, NotFound, Unauthorized
from tests.integration.api_helpers import api_settings
from tests.integration.live_server import insert_key, live_server


@pytest.fixture
def server(database, tmp_path, model_id):
    with live_server(create_app(database.app_url, api_settings(database, tmp_path))) as url:
        yield url


@pytest.fixture
def key(owner_conn, model_id) -> str:
    return insert_key(owner_conn, "alice", "creator")


def insert(conn, model_id: int, n: int) -> list[str]:
    rows = conn.execute(
        "INSERT INTO generations (owner, model_id, kind, tags) SELECT 'alice', %s, 'text2music', '{piano}' "
        "FROM generate_series(1, %s) RETURNING id",
        (model_id, n),
    ).fetchall()
    return [str(r[0]) for r in rows]


def test_typed_results_and_problem_details(server, key, owner_conn, model_id):
    [generation_id] = insert(owner_conn, model_id, 1)
    with Client(server, key) as client:
        me = client.me()
        assert (me.owner, me.role) == ("alice", "creator")
        item = client.generation(generation_id)
        assert (str(item.id), item.status, item.model.alias, item.tags) == (generation_id, "pending", "m", ["piano"])
        assert [str(g.id) for g in client.generations(limit=5).items] == [generation_id]
        assert (item.visibility, client.set_visibility(generation_id, "public").visibility) == ("private", "public")
        with pytest.raises(InvalidRequest) as bad_visibility:
            client.set_visibility(generation_id, "secret")
        assert "visibility" in bad_visibility.value.field_errors
        with pytest.raises(NotFound) as missing:
            client.generation(uuid.uuid4())
        assert missing.value.status == 404 and "no generation" in missing.value.detail
        with pytest.raises(InvalidRequest) as bad:
            client.generate("piano", steps=500)
        assert "steps" in bad.value.field_errors
        with pytest.raises(Unauthorized):
            Client(server, "sk_wrong").me()


def test_wait_follows_the_event_stream(database, tmp_path, key, owner_conn, model_id):
    """Whatever the interleaving of the changes with the stream's start, wait returns the final states."""
    ids = insert(owner_conn, model_id, 2)
    owner_conn.execute("UPDATE generations SET status = 'succeeded' WHERE id = %s", (ids[0],))  # before waiting
    app = create_app(database.app_url, api_settings(database, tmp_path))

    async def scenario(url: str):
        async with AsyncClient(url, key) as client:
            waiting = asyncio.create_task(client.wait(ids, timeout=60))
            while app.state.event_hub.subscribers("alice") == 0:  # the stream is open
                assert not waiting.done(), waiting.exception()
                await asyncio.sleep(0.05)
            owner_conn.execute("UPDATE generations SET status = 'running' WHERE id = %s", (ids[1],))
            owner_conn.execute("UPDATE generations SET status = 'failed', error = 'x' WHERE id = %s", (ids[1],))
            return await waiting

    with live_server(app) as url:
        finished = asyncio.run(scenario(url))
    assert [(str(g.id), g.status) for g in finished] == [(ids[0], "succeeded"), (ids[1], "failed")]


def test_events_iterator_and_uploads(server, key, owner_conn, model_id):
    with Client(server, key) as client:
        stream = client.events(after=0)
        ready = next(stream)
        assert ready.type == "ready" and ready.data == {"last_event_id": 0}
        [generation_id] = insert(owner_conn, model_id, 1)
        event = next(stream)
        assert (event.type, event.data["id"], event.data["status"]) == ("generation", generation_id, "pending")
        stream.close()

        buffer = io.BytesIO()
        sf.write(buffer, np.zeros(1600, dtype=np.float32), 16000, format="WAV")
        with pytest.raises(Conflict) as refused:  # the upload arrived whole; this registry has no default model
            client.import_audio(buffer.getvalue(), tags=["mine"])
        assert "no default model" in refused.value.detail


def test_webhooks_through_the_client(server, key):
    with Client(server, key) as client:
        created = client.create_webhook("http://127.0.0.1:9/hook", events=["batch"])
        assert created.secret.startswith("whsec_") and created.events == ["batch"]
        assert [w.id for w in client.webhooks()] == [created.id] and not hasattr(client.webhooks()[0], "secret")
        assert client.test_webhook(created.id).type == "ping"
        rotated = client.rotate_webhook_secret(created.id, grace_seconds=0)
        assert rotated.secret != created.secret and rotated.previous_secret_expires_at is None
        assert client.deliveries(created.id).items[0].type == "ping"
        client.delete_webhook(created.id)
        assert client.webhooks() == []


def test_presets_and_defaults_through_the_client(server, key):
    name = f"lofi-{uuid.uuid4().hex[:8]}"
    with Client(server, key) as client:
        preset = client.create_preset(name, prompt="piano, minor", steps=7, model="m", visibility="public")
        assert (preset.name, preset.steps, preset.guidance_scale) == (name, 7, None)
        assert client.preset(preset.id) == preset and preset.id in [p.id for p in client.presets().items]
        assert client.set_defaults(batch_size=2, visibility="public").batch_size == 2
        assert (client.defaults().visibility, client.defaults().steps) == ("public", None)
        accepted = client.generate(preset=preset.id, seed=3)
        made = [client.generation(i) for i in accepted.ids]
        assert [(g.params["prompt"], g.params["steps"], g.visibility) for g in made] == [
            ("piano, minor", 7, "public")
        ] * 2
        with pytest.raises(Conflict):
            client.create_preset(name)
        client.set_defaults()
        client.delete_preset(preset.id)
        with pytest.raises(NotFound):
            client.preset(preset.id)
        with pytest.raises(InvalidRequest) as no_prompt:
            client.generate(seed=1)
        assert "prompt" in no_prompt.value.field_errors

"""Re-encode fixtures: two tiny models (two training seeds: two latent spaces), distinct clips, API helpers."""

from __future__ import annotations

import asyncio
import io
import time
from contextlib import asynccontextmanager

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import register_test_model
from tests.integration.api_helpers import api_client, api_settings, bearer_for

RATE = 16_000


@pytest.fixture(scope="session")
def tiny_pipeline_b(tiny_checkpoint_b):
    from service.ml.pipeline import Pipeline

    return Pipeline.load(tiny_checkpoint_b)


@pytest.fixture
def two_models(owner_conn, tiny_model, tiny_pipeline_b, tiny_checkpoint_b) -> dict:
    """``tiny`` (the default, the catalogue's current space) and ``next`` (another model, not the default)."""
    return {
        "old": tiny_model,
        "new": register_test_model(owner_conn, tiny_pipeline_b, tiny_checkpoint_b, "next", False),
    }


@asynccontextmanager
async def _client(database, two_models, tmp_path, worker: bool):
    settings = api_settings(database, tmp_path, reencode_chunk_size=3)
    async with api_client(database, settings, worker=worker) as client:
        client.alice = await bearer_for(client, "alice", "creator")
        client.rita = await bearer_for(client, "rita", "reader")
        client.admin = await bearer_for(client, "root", "admin")
        client.models = two_models
        yield client


@pytest.fixture
async def client(database, two_models, tmp_path):
    """The API with a worker beside it."""
    async with _client(database, two_models, tmp_path, worker=True) as client:
        yield client


@pytest.fixture
async def idle_client(database, two_models, tmp_path):
    """The API with no worker: batches stay pending."""
    async with _client(database, two_models, tmp_path, worker=False) as client:
        yield client


def tone(index: int, seconds: float = 2.0) -> tuple[bytes, np.ndarray]:
    """A distinct clip per index (its own pitch and pulse), as WAV bytes and the mono audio they decode to."""
    t = np.arange(int(seconds * RATE)) / RATE
    pitch, pulse = 110.0 * 2 ** (index / 7), 1.0 + index % 5
    mono = 0.4 * np.sin(2 * np.pi * pitch * t) * np.exp(-3 * ((t * pulse) % 1.0))
    buffer = io.BytesIO()
    sf.write(buffer, mono.astype(np.float32), RATE, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    decoded, _ = sf.read(io.BytesIO(data), dtype="float32")
    return data, decoded


async def import_tone(client, headers, index: int, visibility: str = "public", model: str | None = None) -> str:
    form = {"visibility": visibility, "tags": f"tone {index}"} | ({"model": model} if model else {})
    response = await client.post(
        "/v1/imports", files={"file": (f"tone-{index}.wav", tone(index)[0])}, data=form, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def wait_for_batch(client, headers, batch_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = (await client.get(f"/v1/batches/{batch_id}", headers=headers)).json()
        if body["status"] not in ("pending", "running"):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"batch {batch_id} did not finish in {timeout} s: {body}")


def latents_by_model(owner_conn, model_id: int) -> dict[str, np.ndarray]:
    rows = owner_conn.execute(
        "SELECT generation_id::text, embedding::text FROM latent_embeddings WHERE model_id = %s", (model_id,)
    ).fetchall()
    return {gid: np.array(vector.strip("[]").split(","), dtype=np.float32) for gid, vector in rows}

"""POST /v1/imports: real files in, a searchable generation out; every bad file a clear 4xx, nothing stored."""

import io

import numpy as np
import pytest
import soundfile as sf

from tests.integration.api_helpers import api_client, api_settings, bearer_for


def clip_bytes(seconds=4.0, rate=22050, fmt="WAV", channels=2, silent=False) -> tuple[bytes, np.ndarray, int]:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    mono = (
        0.0 * t
        if silent
        else 0.4 * np.sin(2 * np.pi * 330 * t) * np.exp(-2 * (t % 0.5)) + 0.01 * rng.normal(size=t.size)
    )
    audio = np.stack([mono] * channels, axis=1).astype(np.float32)
    buffer = io.BytesIO()
    subtypes = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "MP3": "MPEG_LAYER_III", "AIFF": "PCM_16"}
    sf.write(buffer, audio, rate, format=fmt, subtype=subtypes[fmt])
    data = buffer.getvalue()
    decoded, decoded_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return data, decoded.mean(axis=1), decoded_rate


@pytest.fixture
async def client(database, tiny_model, tmp_path):
    settings = api_settings(database, tmp_path)
    settings.storage.max_upload_bytes = 600_000
    async with api_client(database, settings, worker=False) as client:
        client.alice = await bearer_for(client, "alice", "creator")
        client.reader = await bearer_for(client, "rita", "reader")
        client.blob_dir = tmp_path / "blobs"
        yield client


def stored(owner_conn) -> tuple[int, int, int]:
    return tuple(
        owner_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("generations", "audio_assets", "latent_embeddings")
    )


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
async def test_import_makes_a_searchable_generation(client, tiny_model, owner_conn, fmt):
    data, mono, rate = clip_bytes(fmt=fmt)
    response = await client.post(
        "/v1/imports",
        files={"file": (f"riff.{fmt.lower()}", data)},
        data={"visibility": "public", "tags": "Jazz, live"},
        headers=client.alice,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "import" and body["status"] == "succeeded" and body["tags"] == ["jazz", "live"]
    assert body["params"]["original_sample_rate"] == rate and body["visibility"] == "public"
    latent = (await client.get(body["links"]["latent"], headers=client.alice)).json()["values"]
    expected = tiny_model["pipeline"].encode(mono, rate)
    np.testing.assert_allclose(np.array(latent, dtype=np.float32), expected, rtol=1e-5, atol=1e-5)
    audio = await client.get(body["links"]["audio"], headers=client.alice)
    assert sf.info(io.BytesIO(audio.content)).samplerate == rate
    assert stored(owner_conn) == (1, 1, 1)


def truncated_wav() -> bytes:
    return clip_bytes()[0][:100]


@pytest.mark.parametrize(
    ("name", "data", "status", "fragment"),
    [
        ("empty.wav", b"", 422, "empty"),
        ("cut.wav", truncated_wav(), 422, "truncated"),
        ("notes.wav", b"these are my notes, not audio\n" * 20, 422, "not a readable"),
        ("blip.wav", clip_bytes(seconds=0.1)[0], 422, "too short"),
        ("silence.wav", clip_bytes(silent=True)[0], 422, "silent"),
        ("long.wav", clip_bytes(seconds=20)[0], 413, "upload limit of 600000 bytes"),
        ("take.aiff", clip_bytes(fmt="AIFF")[0], 422, "aiff (apple/sgi); upload wav, flac, ogg or mp3"),
    ],
    ids=["empty", "truncated", "renamed-text", "too-short", "silent", "over-size-limit", "unlisted-format"],
)
async def test_bad_files_are_refused_and_nothing_is_stored(client, owner_conn, name, data, status, fragment):
    response = await client.post("/v1/imports", files={"file": (name, data)}, headers=client.alice)
    assert response.status_code == status, response.text
    problem = response.json()
    assert fragment in problem["detail"].lower()
    if status == 422:
        assert problem["errors"][0]["field"] == "file"
    assert stored(owner_conn) == (0, 0, 0)
    assert not client.blob_dir.exists() or not any(client.blob_dir.rglob("*.wav"))


async def test_unreadable_file_error_says_why_without_python_internals(client):
    response = await client.post(
        "/v1/imports", files={"file": ("notes.mp3", b"plain text\n" * 50)}, headers=client.alice
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "notes.mp3 is not a readable WAV, FLAC, OGG or MP3 file (Format not recognised)"


async def test_missing_file_field_and_roles(client, owner_conn):
    no_file = await client.post("/v1/imports", data={"visibility": "public"}, headers=client.alice)
    assert no_file.status_code == 400
    data = clip_bytes()[0]
    forbidden = await client.post("/v1/imports", files={"file": ("a.wav", data)}, headers=client.reader)
    assert forbidden.status_code == 403
    unknown_model = await client.post(
        "/v1/imports", files={"file": ("a.wav", data)}, data={"model": "nope"}, headers=client.alice
    )
    assert unknown_model.status_code == 422 and unknown_model.json()["errors"][0]["field"] == "model"
    assert stored(owner_conn) == (0, 0, 0)

"""Whole tracks and segments, and the "nothing similar" signal: long imports store their windows, segment search
finds the right window of the right track, imports and audio searches carry the model's in-domain verdict, and
search can leave flagged items out."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from service.domain.catalogue.bulk_import import import_folder
from service.domain.catalogue.imports import ImportOptions
from service.storage import BlobStore
from tests.integration.api_helpers import api_client, api_settings, bearer_for

RATE = 16_000  # the tiny model's rate: no resampling, so a window of a long file is exactly the clip it holds


def tone(kind: str, seconds: float = 4.0) -> np.ndarray:
    """Known clips that sound nothing alike, loud from their first sample to their last (no edge trimming)."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(len(kind))
    if kind == "bell":
        audio = 0.4 * np.cos(2 * np.pi * 330 * t) * np.exp(-2 * (t % 0.5))
    elif kind == "buzz":
        audio = 0.3 * np.sign(np.cos(2 * np.pi * 110 * t) + 1e-9) * (0.8 + 0.2 * np.cos(2 * np.pi * 3 * t))
    elif kind == "chord":
        audio = sum(0.15 * np.cos(2 * np.pi * f * t) for f in (523.3, 659.3, 784.0)) * (0.6 + 0.4 * np.cos(8 * t))
    else:  # noise
        audio = 0.3 * rng.standard_normal(t.size)
    return (audio + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def wav(*parts: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate(parts), RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


@pytest.fixture
async def client(database, tiny_model, tmp_path):
    async with api_client(database, api_settings(database, tmp_path), worker=False) as client:
        client.alice = await bearer_for(client, "alice", "creator")
        client.rita = await bearer_for(client, "rita", "reader")
        yield client


async def imported(client, name: str, data: bytes, visibility: str = "public") -> dict:
    response = await client.post(
        "/v1/imports", files={"file": (name, data)}, data={"visibility": visibility}, headers=client.alice
    )
    assert response.status_code == 201, response.text
    return response.json()


async def search_audio(client, data: bytes, headers=None, **query) -> dict:
    response = await client.post(
        "/v1/search",
        files={"file": ("q.wav", data)},
        data={"query": json.dumps(query)},
        headers=headers or client.alice,
    )
    assert response.status_code == 200, response.text
    return response.json()


def segment_count(owner_conn, generation_id: str) -> int:
    return owner_conn.execute(
        "SELECT count(*) FROM latent_segments WHERE generation_id = %s", (generation_id,)
    ).fetchone()[0]


@pytest.fixture
async def catalogue(client, owner_conn):
    """A 12 s track bell+buzz+chord, a private distractor chord+bell+chord, and a one-window bell clip."""
    bell, buzz, chord = tone("bell"), tone("buzz"), tone("chord")
    track = await imported(client, "track.wav", wav(bell, buzz, chord))
    other = await imported(client, "other.wav", wav(chord, bell, chord), visibility="private")
    short = await imported(client, "short.wav", wav(bell))
    return {"track": track["id"], "other": other["id"], "short": short["id"]}


async def test_a_long_import_stores_its_windows_and_a_short_one_none(client, catalogue, owner_conn, tiny_model):
    windows = owner_conn.execute(
        "SELECT start_seconds, end_seconds, model_id, embedding FROM latent_segments WHERE generation_id = %s "
        "ORDER BY start_seconds",
        (catalogue["track"],),
    ).fetchall()
    analysis = tiny_model["pipeline"].analyse(np.concatenate([tone("bell"), tone("buzz"), tone("chord")]), RATE)
    assert [(round(a, 3), round(b, 3)) for a, b, _, _ in windows] == [(0, 4), (2, 6), (4, 8), (6, 10), (8, 12)]
    assert {model for _, _, model, _ in windows} == {tiny_model["id"]}
    stored = np.stack([e.to_numpy() for *_, e in windows])
    np.testing.assert_allclose(stored, analysis.window_latents, rtol=1e-4, atol=1e-4)
    assert segment_count(owner_conn, catalogue["short"]) == 0


async def test_segment_search_finds_the_window_of_the_track_that_holds_the_clip(client, catalogue):
    body = await search_audio(client, wav(tone("buzz")), segments=True, group_size=2)
    ids = [hit["id"] for hit in body["items"]]
    assert ids[0] == catalogue["track"] and len(ids) == len(set(ids))  # grouped: one hit per item
    assert catalogue["short"] not in ids  # a one-window clip has no segments
    best = body["items"][0]["segments"]
    assert (best[0]["start"], best[0]["end"]) == pytest.approx((4.0, 8.0), abs=0.01)
    assert best[0]["score"] > 0.999 and len(best) == 2 and best[0]["score"] >= best[1]["score"]
    assert body["items"][0]["score"] == pytest.approx(best[0]["score"])

    flat = await search_audio(client, wav(tone("buzz")), segments=True, group_by="none", limit=4)
    assert len(flat["items"]) == 4 and all(len(hit["segments"]) == 1 for hit in flat["items"])
    first = flat["items"][0]
    assert first["id"] == catalogue["track"] and first["segments"][0]["start"] == pytest.approx(4.0, abs=0.01)


async def test_segment_search_sees_only_visible_items(client, catalogue):
    mine = await search_audio(client, wav(tone("chord")), segments=True)
    theirs = await search_audio(client, wav(tone("chord")), headers=client.rita, segments=True)
    assert catalogue["other"] in {hit["id"] for hit in mine["items"]}
    assert catalogue["other"] not in {hit["id"] for hit in theirs["items"]}
    assert {hit["id"] for hit in theirs["items"]} == {catalogue["track"]}


async def test_a_long_query_searched_window_by_window_says_which_part_matched(client, catalogue):
    query = wav(tone("buzz"), tone("chord"))  # query windows: buzz 0-4, mixed 2-6, chord 4-8
    body = await search_audio(client, query, segments=True, group_by="none", audio_query="windows", limit=20)
    track = {round(h["segments"][0]["start"]): h["segments"][0] for h in body["items"] if h["id"] == catalogue["track"]}
    assert track[4]["query_start"] == pytest.approx(0.0, abs=0.01) and track[4]["score"] > 0.999  # buzz
    assert track[8]["query_start"] == pytest.approx(4.0, abs=0.01) and track[8]["score"] > 0.999  # chord
    pooled = await search_audio(client, query, segments=True, group_by="none", limit=20)
    assert all(s["query_start"] is None for h in pooled["items"] for s in h["segments"])

    items = await search_audio(client, query, audio_query="windows")  # whole items, window by window
    assert all(hit["query_start"] is not None and hit["segments"] is None for hit in items["items"])


async def test_a_generation_id_query_searches_the_segments_of_other_items(client, catalogue):
    response = await client.post(
        "/v1/search", json={"generation_id": catalogue["track"], "segments": True}, headers=client.alice
    )
    assert response.status_code == 200, response.text
    ids = [hit["id"] for hit in response.json()["items"]]
    assert ids == [catalogue["other"]]  # itself excluded; the short clip has no windows


def set_threshold(owner_conn, model_id: int, threshold: float) -> None:
    owner_conn.execute(
        "UPDATE models SET metadata = metadata || jsonb_build_object('in_domain_threshold', %s::float8) WHERE id = %s",
        (threshold, model_id),
    )


async def test_imports_and_audio_searches_carry_the_models_verdict(client, tiny_model, owner_conn):
    pipeline = tiny_model["pipeline"]
    body = await imported(client, "noise.wav", wav(tone("noise")))
    assert 0.0 <= body["in_domain"] <= 1.0
    assert body["in_domain_ok"] == (body["in_domain"] >= pipeline.in_domain_threshold)  # no threshold recorded
    assert body["in_domain"] == pytest.approx(pipeline.analyse(tone("noise"), RATE).in_domain, abs=1e-5)
    fetched = (await client.get(f"/v1/generations/{body['id']}", headers=client.alice)).json()
    assert (fetched["in_domain"], fetched["in_domain_ok"]) == (body["in_domain"], body["in_domain_ok"])

    set_threshold(owner_conn, tiny_model["id"], 0.5)  # the registry's threshold wins over the checkpoint's
    verdict = (await search_audio(client, wav(tone("noise"))))["in_domain"]
    assert verdict["score"] == pytest.approx(body["in_domain"], abs=1e-5)
    assert verdict["threshold"] == 0.5 and verdict["ok"] == (verdict["score"] >= 0.5)
    by_vector = await client.post("/v1/search", json={"vector": [1.0] * 512}, headers=client.alice)
    assert by_vector.json()["in_domain"] is None  # only audio queries are judged


async def test_a_flagged_import_is_stored_and_the_filter_leaves_it_out(client, tiny_model, owner_conn):
    """The registry's threshold decides: just above the noise's score it is flagged, at 0 the music passes."""
    long_noise = np.concatenate([tone("noise"), tone("noise", seconds=4.5)])
    score = tiny_model["pipeline"].analyse(long_noise, RATE).in_domain
    set_threshold(owner_conn, tiny_model["id"], min(1.0, score + 1e-6))
    noise = await imported(client, "noise.wav", wav(long_noise))
    set_threshold(owner_conn, tiny_model["id"], 0.0)
    music = await imported(client, "music.wav", wav(tone("bell"), tone("buzz")))
    assert noise["in_domain_ok"] is False and music["in_domain_ok"] is True
    assert owner_conn.execute("SELECT count(*) FROM generations WHERE in_domain_ok = false").fetchone()[0] == 1
    assert segment_count(owner_conn, noise["id"]) == 4  # stored all the same, windows too (8.5 s: 4 windows)

    for segments in (False, True):
        query = {"vector": [1.0] * 512, "segments": segments}
        everything = await client.post("/v1/search", json=query, headers=client.alice)
        kept = await client.post("/v1/search", json=query | {"filter": {"in_domain_only": True}}, headers=client.alice)
        assert {h["id"] for h in everything.json()["items"]} == {noise["id"], music["id"]}
        assert {h["id"] for h in kept.json()["items"]} == {music["id"]}


@pytest.mark.parametrize(
    ("query", "status", "field", "fragment"),
    [
        ({"segments": True, "diversity": 0.5}, 422, "segments", "cannot be combined"),
        ({"segments": True, "cursor": "abc"}, 422, "segments", "cannot be combined"),
        ({"group_by": "item"}, 422, "group_by", "needs segments=true"),
        ({"segments": True, "group_by": "cluster"}, 422, "group_by", "not by cluster"),
        ({"segments": True, "group_size": 0}, 422, "group_size", "group_size must be in [1, 10]"),
        ({"audio_query": "windows"}, 422, "audio_query", "upload one"),
        ({"audio_query": "slices"}, 400, "audio_query", "Invalid enum value"),
        ({"segments": "yes"}, 400, "segments", "Expected `bool`"),
        ({"filter": {"in_domain_only": 1}}, 400, "filter.in_domain_only", "Expected `bool`"),
    ],
)
async def test_bad_segment_queries_name_the_field(client, tiny_model, query, status, field, fragment):
    response = await client.post("/v1/search", json={"vector": [1.0] * 512} | query, headers=client.alice)
    assert response.status_code == status, response.text
    body = response.json()
    assert fragment in json.dumps(body), body
    assert any(error["field"] == field for error in body.get("errors", [])) or field in body["detail"], body


async def test_a_window_by_window_query_longer_than_the_cap_is_refused(client, tiny_model, monkeypatch):
    from service.domain.discovery import segment_search

    monkeypatch.setattr(segment_search, "MAX_QUERY_WINDOWS", 2)
    response = await client.post(
        "/v1/search",
        files={"file": ("long.wav", wav(tone("bell"), tone("buzz")))},
        data={"query": json.dumps({"audio_query": "windows"})},
        headers=client.alice,
    )
    assert response.status_code == 422 and "at most 2" in response.text
    assert response.json()["errors"][0]["field"] == "file"


def test_a_folder_import_stores_windows_and_verdicts(database, settings, tiny_model, tmp_path, owner_conn):
    from service.db.engine import connect_sync

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "long.wav").write_bytes(wav(tone("bell"), tone("buzz"), tone("chord")))
    (folder / "short.wav").write_bytes(wav(tone("noise")))
    pipeline = tiny_model["pipeline"]
    threshold = min(1.0, pipeline.analyse(tone("noise"), RATE).in_domain + 1e-6)  # the noise is flagged
    set_threshold(owner_conn, tiny_model["id"], threshold)
    store = BlobStore(tmp_path / "blobs", tmp_path / "archive")
    files = sorted(folder.iterdir())
    with connect_sync(database.app_url) as conn:
        report = import_folder(
            conn, store, pipeline, tiny_model["id"], "label", files, ImportOptions(), settings.storage
        )
    assert report.imported == 2, report.skipped
    rows = owner_conn.execute(
        "SELECT g.params->>'filename', g.in_domain, g.in_domain_ok, count(s.id) FROM generations g "
        "LEFT JOIN latent_segments s ON s.generation_id = g.id GROUP BY g.id ORDER BY 1"
    ).fetchall()
    assert [(name, windows) for name, _, _, windows in rows] == [("long.wav", 5), ("short.wav", 0)]
    assert all(0.0 <= score <= 1.0 and ok == (score >= threshold) for _, score, ok, _ in rows)
    flagged = {name for name, _, ok, _ in rows if not ok}
    assert "short.wav" in flagged and {Path(path).name for path in report.flagged} == flagged


def test_a_reencode_keeps_the_windows_of_long_files_only(tiny_pipeline):
    """What a re-encode chunk stores: batched latents for one-window clips, windows for longer files."""
    import uuid

    from service.domain.catalogue.segments import encode_with_windows

    short, long, bad = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    long_audio = np.concatenate([tone("bell"), tone("buzz")])
    clips = [(long, long_audio, RATE), (short, tone("chord"), RATE), (bad, np.zeros(RATE, np.float32), RATE)]
    latents, refused, rows = encode_with_windows(tiny_pipeline, 7, clips)
    assert [key for key, _ in latents] == [long, short] and [key for key, _ in refused] == [bad]
    np.testing.assert_allclose(latents[0][1], tiny_pipeline.encode(long_audio, RATE), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(latents[1][1], tiny_pipeline.encode(tone("chord"), RATE), rtol=1e-4, atol=1e-5)
    assert [(key, model, start, end) for key, model, start, end, _, _ in rows] == [
        (long, 7, 0.0, 4.0),
        (long, 7, 2.0, 6.0),
        (long, 7, 4.0, 8.0),
    ]


async def test_a_deleted_track_leaves_segment_search_at_once_and_its_windows_at_purge(client, catalogue, owner_conn):
    from service.domain.catalogue import lifecycle

    deleted = await client.delete(f"/v1/generations/{catalogue['track']}", headers=client.alice)
    assert deleted.status_code == 204, deleted.text
    body = await search_audio(client, wav(tone("buzz")), segments=True)
    assert catalogue["track"] not in {hit["id"] for hit in body["items"]}
    assert segment_count(owner_conn, catalogue["track"]) == 5
    async with client.app.state.sessionmaker() as session:
        await lifecycle.purge_deleted(session)
    assert segment_count(owner_conn, catalogue["track"]) == 0 and segment_count(owner_conn, catalogue["other"]) == 5

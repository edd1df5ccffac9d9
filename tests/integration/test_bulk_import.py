"""`soundalike import DIR`: every readable file becomes a generation with audio and latent; bad ones are reported."""

import numpy as np
import pytest

from tests.integration.test_cli import external, soundalike
from tests.integration.test_imports import clip_bytes

pytestmark = pytest.mark.slow


def test_folder_import(database, tiny_model, tmp_path, owner_conn):
    folder = tmp_path / "catalogue"
    (folder / "nested").mkdir(parents=True)
    expected = {}
    formats = [("WAV", 22050), ("FLAC", 16000), ("OGG", 44100), ("WAV", 16000), ("MP3", 22050)]
    for i, (fmt, rate) in enumerate(formats):
        data, mono, _ = clip_bytes(seconds=2 + i, rate=rate, fmt=fmt)
        name = f"track{i}.{fmt.lower()}"
        (folder / ("nested" if i % 2 else "") / name).write_bytes(data)
        expected[name] = tiny_model["pipeline"].encode(mono, rate)
    (folder / "broken.wav").write_bytes(b"not audio at all")
    (folder / "readme.txt").write_text("ignored: not an audio suffix")

    env = {**external(database), "SOUNDALIKE_STORAGE_BLOB_DIR": str(tmp_path / "blobs")}
    result = soundalike(
        "import", str(folder), "--owner", "label", "--tags", "archive, 2019", "--batch-size", "3", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "imported 5 of 6 files" in result.stdout
    assert "skipped" in result.stderr and "broken.wav" in result.stderr
    assert f"ignored {folder / 'readme.txt'}: not one of .wav, .flac, .ogg, .mp3" in result.stderr

    rows = owner_conn.execute(
        "SELECT g.params->>'filename', g.tags, g.owner, l.embedding, a.uri FROM generations g "
        "JOIN latent_embeddings l ON l.generation_id = g.id JOIN audio_assets a ON a.generation_id = g.id "
        "WHERE g.kind = 'import'"
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(expected)
    for name, tags, owner, embedding, uri in rows:
        assert tags == ["archive", "2019"] and owner == "label"
        np.testing.assert_allclose(embedding.to_numpy(), expected[name], rtol=1e-4, atol=1e-4)
        assert (tmp_path / "blobs" / uri.removeprefix("blob:")).exists()


def test_empty_folder_is_an_error(database, tmp_path):
    result = soundalike("import", str(tmp_path), "--owner", "x", env=external(database))
    assert result.returncode == 1 and "no .wav, .flac, .ogg, .mp3 files" in result.stderr


def test_each_batch_commits_on_the_connection_the_cli_opens(database, settings, tiny_model, tmp_path, owner_conn):
    """`soundalike import` hands a plain (not autocommit) psycopg connection to import_folder. A read before the
    first batch once opened a transaction there that every batch then nested in as a savepoint: nothing was
    committed before the last file, and the re-encode lock of the model was held all along, so a re-encode
    started meanwhile (benchmarks/reencode.py did) waited on an import that waited on it."""
    from service.db.engine import connect_sync
    from service.domain.catalogue.bulk_import import audio_files, import_folder
    from service.domain.catalogue.imports import ImportOptions
    from service.domain.models import reencode
    from service.storage import BlobStore

    folder = tmp_path / "catalogue"
    folder.mkdir()
    for i in range(4):
        (folder / f"track{i}.wav").write_bytes(clip_bytes(seconds=1 + i / 4, rate=16000)[0])
    seen = []

    def after_batch(count: int) -> None:
        imported = owner_conn.execute("SELECT count(*) FROM generations WHERE kind = 'import'").fetchone()[0]
        free = owner_conn.execute(
            "SELECT pg_try_advisory_xact_lock(%s::int, %s::int)", (reencode.LOCK_SOURCE, tiny_model["id"])
        ).fetchone()[0]
        seen.append((imported, free))

    store = BlobStore(tmp_path / "blobs", tmp_path / "archive")

    def import_all(conn, **batching):
        """The four files into the tiny model's space, as one folder import on ``conn``."""
        return import_folder(
            conn,
            store,
            tiny_model["pipeline"],
            tiny_model["id"],
            "label",
            audio_files(folder),
            ImportOptions(),
            settings.storage,
            **batching,
        )

    with connect_sync(database.app_url) as conn:
        report = import_all(conn, batch_size=2, on_batch=after_batch)
        assert report.imported == 4
        assert seen == [(2, True), (4, True)], "each batch is committed and leaves the re-encode lock free"

        conn.execute("SELECT 1")  # a transaction the caller opened: refused, not silently nested in
        with pytest.raises(ValueError, match="outside a transaction"):
            import_all(conn)

"""Point-in-time recovery with real WAL archiving on a real embedded server (the issue's test): write, note
the time, write more, drop a table by mistake, restore to the noted time with the CLI. The first writes are
back, the later ones are not, the HNSW index is valid and the rebuilt FAISS mirror agrees with it; a restore
whose rows reference a missing audio file says which and is not switched in."""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from service.cli import main
from service.db.engine import connect_sync
from service.db.schema import migrate
from service.db.server.runtime import open_database
from service.settings import Settings, get_settings
from service.storage import BlobStore

pytestmark = pytest.mark.slow


@pytest.fixture
def pitr_env(monkeypatch):
    root = Path(tempfile.mkdtemp(prefix="soundalike-test-pitr-"))
    root.chmod(0o755)
    monkeypatch.delenv("SOUNDALIKE_DATABASE_URL", raising=False)
    for name, sub in [
        ("DATABASE_EMBEDDED_DIR", "pg"),
        ("STORAGE_WAL_DIR", "wal"),
        ("STORAGE_BACKUP_DIR", "backups"),
        ("STORAGE_BLOB_DIR", "blobs"),
        ("STORAGE_ARCHIVE_DIR", "archive"),
        ("STORAGE_INDEX_DIR", "index"),
    ]:
        monkeypatch.setenv(f"SOUNDALIKE_{name}", str(root / sub))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
    shutil.rmtree(root, ignore_errors=True)


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def add_items(conn, store: BlobStore, model_id: int, tag: str, n: int, rng) -> None:
    for i in range(n):
        gid = conn.execute(
            "INSERT INTO generations (owner, model_id, kind, status, tags) VALUES ('alice', %s, 'import', "
            "'succeeded', %s) RETURNING id",
            (model_id, [tag]),
        ).fetchone()[0]
        blob = store.put(f"{tag}-{i}".encode(), ".wav")
        conn.execute(
            "INSERT INTO audio_assets (generation_id, uri, sha256, bytes, sample_rate, duration_seconds, format) "
            "VALUES (%s, %s, %s, %s, 16000, 1.0, 'wav')",
            (gid, blob.uri, blob.sha256, blob.bytes),
        )
        vector = rng.standard_normal(512).astype(np.float32)
        conn.execute(
            "INSERT INTO latent_embeddings (generation_id, model_id, embedding) VALUES (%s, %s, %s)",
            (gid, model_id, vector),
        )


def count(conn, tag: str) -> int:
    return conn.execute("SELECT count(*) FROM generations WHERE %s = ANY(tags)", (tag,)).fetchone()[0]


def test_restore_to_a_noted_time_brings_back_the_first_writes_only(pitr_env: Settings):
    store = BlobStore(pitr_env.storage.blob_dir, pitr_env.storage.archive_dir)
    rng = np.random.default_rng(0)
    handle = open_database(pitr_env)
    try:
        migrate.upgrade(handle.migration_url, pitr_env.database.app_role)
        with connect_sync(handle.migration_url, autocommit=True) as conn:
            model_id = conn.execute(
                "INSERT INTO models (source_id, alias, source_type, version) VALUES ('m', 'm', 'local', 'v1') "
                "RETURNING id"
            ).fetchone()[0]
            add_items(conn, store, model_id, "before-base", 5, rng)
            assert "base backup" in cli("backup", "--base")
            add_items(conn, store, model_id, "first", 5, rng)
            first_uri = conn.execute(
                "SELECT a.uri FROM audio_assets a JOIN generations g ON g.id = a.generation_id "
                "WHERE 'first' = ANY(g.tags) LIMIT 1"
            ).fetchone()[0]
            noted = conn.execute("SELECT clock_timestamp()").fetchone()[0]
            add_items(conn, store, model_id, "later", 5, rng)
            conn.execute("DROP TABLE audio_assets")  # by mistake
    finally:
        handle.close()

    # an audio file of the first writes is missing: the recovered directory does not verify and is not used
    missing = store.path(first_uri)
    kept = missing.read_bytes()
    missing.unlink()
    failed = CliRunner().invoke(main, ["restore", "--until", noted.isoformat(), "--yes"])
    assert failed.exit_code == 1 and "did not verify" in failed.output, failed.output
    assert f"audio file {first_uri} is missing from the blob store" in failed.output
    assert len(list(pitr_env.database.embedded_dir.parent.glob("pg.restore-*"))) == 1  # left for inspection

    missing.write_bytes(kept)  # the blob store synced back
    output = cli("restore", "--until", noted.isoformat(), "--yes")
    assert "indexes valid, every referenced audio file present" in output and "before-restore" in output

    handle = open_database(pitr_env)
    try:
        with connect_sync(handle.migration_url, autocommit=True) as conn:
            assert (count(conn, "before-base"), count(conn, "first"), count(conn, "later")) == (5, 5, 0)
            assert conn.execute("SELECT count(*) FROM audio_assets").fetchone()[0] == 10
            hnsw = conn.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a "
                "ON a.oid = c.relam WHERE a.amname = 'hnsw' AND i.indrelid = 'latent_embeddings'::regclass"
            ).fetchall()
            assert hnsw == [(True,)]
            assert_mirror_agrees_with_hnsw(conn, handle.app_url, pitr_env.storage.index_dir, model_id, rng)
    finally:
        handle.close()


def assert_mirror_agrees_with_hnsw(conn, app_url: str, index_dir: Path, model_id: int, rng) -> None:
    from indexing import mirror
    from indexing.source import ModelRef
    from indexing.verify import verify_model

    report = verify_model(app_url, index_dir, ModelRef(model_id, "m", 512))
    assert report.ok and report.db_count == report.mirror_count == 10, report.summary()
    query = rng.standard_normal(512).astype(np.float32)
    conn.execute("SET enable_seqscan = off")
    by_hnsw = [
        r[0] for r in conn.execute("SELECT id FROM latent_embeddings ORDER BY embedding <=> %s LIMIT 3", (query,))
    ]
    faiss_index = mirror.load(index_dir, model_id).index
    _, ids = faiss_index.search((query / np.linalg.norm(query))[None, :], 3)
    assert by_hnsw == ids[0].tolist()

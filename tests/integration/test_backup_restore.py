"""Backup → drop everything → restore gives back every row and the same nearest-neighbour answer."""

import numpy as np
import psycopg
import pytest

from service.db.engine import connect_sync, copy_rows
from service.db.recovery import backup
from service.db.schema import migrate
from service.errors import DatabaseError, SoundalikeError

N_LATENTS = 300


def _seed_catalogue(conn) -> None:
    rng = np.random.default_rng(7)
    model_id = conn.execute(
        "INSERT INTO models (source_id, alias, source_type, version, is_default) "
        "VALUES ('builtin-default', 'default', 'builtin', 'v1', true) RETURNING id"
    ).fetchone()[0]
    ids = [
        row[0]
        for row in conn.execute(
            "INSERT INTO generations (owner, model_id, kind, status, tags, params) "
            "SELECT 'alice', %s, 'text2music', 'succeeded', ARRAY['piano', 'minor'], '{\"tempo\": 90}' "
            "FROM generate_series(1, %s) RETURNING id",
            (model_id, N_LATENTS),
        ).fetchall()
    ]
    vectors = rng.standard_normal((N_LATENTS, 512)).astype(np.float32)
    copy_rows(
        conn,
        "latent_embeddings",
        ["generation_id", "model_id", "embedding"],
        ["uuid", "int4", "vector"],
        ((gid, model_id, vec) for gid, vec in zip(ids, vectors, strict=True)),
    )
    conn.execute("INSERT INTO api_keys (key_hash, prefix, owner, role) VALUES ('h', 'sk_ab', 'alice', 'admin')")


def _snapshot(conn) -> dict:
    counts = {
        table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("models", "generations", "latent_embeddings", "api_keys")
    }
    query = conn.execute("SELECT embedding FROM latent_embeddings ORDER BY id LIMIT 1").fetchone()[0]
    neighbours = conn.execute(
        "SELECT generation_id FROM latent_embeddings ORDER BY embedding <=> %s LIMIT 10", (query,)
    ).fetchall()
    return {"counts": counts, "neighbours": neighbours}


@pytest.mark.slow
def test_backup_drop_restore_round_trip(make_database, tmp_path):
    handle, settings = make_database("backup_roundtrip")
    migrate.upgrade(handle.migration_url, settings.app_role)
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        _seed_catalogue(conn)
        before = _snapshot(conn)

    info = backup.backup(handle.migration_url, tmp_path / "nested" / "catalogue.dump")
    assert info.bytes > 0 and info.path.exists()
    assert not list(info.path.parent.glob(".catalogue.dump.*")), "temp file left behind"

    migrate.downgrade(handle.migration_url, settings.app_role, "base")
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('latent_embeddings')").fetchone()[0] is None

    backup.restore(handle.migration_url, info.path)
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        assert _snapshot(conn) == before
        assert before["counts"]["latent_embeddings"] == N_LATENTS
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT id FROM latent_embeddings ORDER BY embedding::halfvec(512) <=> (SELECT "
                "embedding::halfvec(512) FROM latent_embeddings LIMIT 1) LIMIT 5"
            ).fetchall()
        )
        assert "ix_latent_embeddings_embedding_halfvec_hnsw" in plan
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == migrate.head_revision()


@pytest.mark.slow
def test_restore_is_all_or_nothing(make_database, tmp_path):
    handle, settings = make_database("backup_atomic")
    migrate.upgrade(handle.migration_url, settings.app_role)
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        _seed_catalogue(conn)
    info = backup.backup(handle.migration_url, tmp_path / "good.dump")
    corrupt = tmp_path / "corrupt.dump"
    corrupt.write_bytes(info.path.read_bytes()[: info.bytes // 2])

    with pytest.raises(DatabaseError, match="pg_restore failed"):
        backup.restore(handle.migration_url, corrupt)
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM latent_embeddings").fetchone()[0] == N_LATENTS


def test_restore_of_a_missing_file_says_so(database, tmp_path):
    with pytest.raises(SoundalikeError, match="no backup file"):
        backup.restore(database.migration_url, tmp_path / "nope.dump")


def _privileges(conn) -> list[tuple]:
    return conn.execute(
        "SELECT n.nspname, c.relname, c.relacl::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname IN ('public', 'procrastinate') AND c.relkind IN ('r', 'S', 'v', 'p') ORDER BY 1, 2"
    ).fetchall()


def test_restore_over_a_live_database_keeps_every_privilege(make_database, tmp_path):
    """Restoring over the live schema recreates each table under the owner's default privileges; the app role
    must still be unable to write the schema version afterwards."""
    handle, settings = make_database("restore_privileges")
    migrate.upgrade(handle.migration_url, settings.app_role)
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        before = _privileges(conn)
    dump = backup.backup(handle.migration_url, tmp_path / "live.dump").path
    backup.restore(handle.migration_url, dump)
    with connect_sync(handle.migration_url, autocommit=True) as conn:
        assert _privileges(conn) == before
    with connect_sync(handle.app_url, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("INSERT INTO alembic_version VALUES ('forged')")

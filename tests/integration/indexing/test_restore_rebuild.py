"""`soundalike restore` rebuilds the FAISS mirrors: the restore loads rows without the change-log triggers, so a
mirror left alone would keep vectors the restored database no longer has."""

from __future__ import annotations

import pytest

from tests.integration.indexing.conftest import insert_latent
from tests.integration.test_cli import external, soundalike

pytestmark = pytest.mark.slow


def test_restore_rebuilds_the_mirrors(database, owner_conn, app_conn, demo, index_dir, tmp_path):
    env = {**external(database), "SOUNDALIKE_STORAGE_INDEX_DIR": str(index_dir)}
    dump = tmp_path / "before.dump"
    assert soundalike("backup", str(dump), env=env).returncode == 0
    insert_latent(app_conn, demo, seed=42)
    for conn in (app_conn, owner_conn):  # a restore refuses to run while other sessions use the database
        conn.close()
    synced = soundalike("index", "sync", "--model", "demo", env=env)
    assert "301 vectors" in synced.stdout, synced.stderr

    kept = soundalike("restore", "--yes", "--no-index", str(dump), env=env)
    assert kept.returncode == 0 and "index rebuild" in kept.stdout, kept.stderr
    stale = soundalike("index", "verify", "--model", "demo", env=env)
    assert stale.returncode == 1, stale.stdout

    restored = soundalike("restore", "--yes", str(dump), env=env)
    assert restored.returncode == 0, restored.stderr
    assert "demo: full" in restored.stdout and "300 vectors" in restored.stdout
    verified = soundalike("index", "verify", "--model", "demo", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr

"""Faults: SIGKILL at exact steps of a sync and of a clustering run, corrupt and truncated mirror files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from indexing import mirror
from indexing.errors import MirrorCorrupt
from indexing.sync import sync_model
from indexing.verify import verify_model
from tests.integration.indexing.conftest import insert_latent, latent_ids, set_generation
from tests.integration.test_cli import external, soundalike


def env_for(database, index_dir, **extra: str) -> dict[str, str]:
    return {**external(database), "SOUNDALIKE_STORAGE_INDEX_DIR": str(index_dir), **extra}


def kill_at(failpoint: str, env: dict[str, str], *args: str) -> None:
    """Run ``soundalike *args`` until it reaches ``failpoint``, then SIGKILL it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDALIKE_")}
    full_env.update(env, SOUNDALIKE_FAILPOINT=failpoint)
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        env=full_env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in proc.stderr:
            if f"failpoint {failpoint} reached" in line:
                break
        else:
            pytest.fail(f"process ended (code {proc.wait()}) before failpoint {failpoint}")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", ["sync:after-read", "sync:after-index-write", "sync:before-manifest", "sync:after-manifest"]
)
def test_sigkill_during_sync_leaves_a_good_mirror_and_the_next_sync_completes(
    database, app_conn, demo, index_dir, point
):
    sync_model(database.app_url, index_dir, demo)
    before = mirror.read_manifest(index_dir, demo.id)
    new = insert_latent(app_conn, demo, seed=42)
    set_generation(app_conn, latent_ids(app_conn, demo)[0], "deleted_at")

    kill_at(point, env_for(database, index_dir), "index", "sync", "--model", "demo")

    survivor = mirror.load(index_dir, demo.id)  # readable, checksum intact: the old mirror or the complete new one
    assert survivor is not None
    if point == "sync:after-manifest":
        assert survivor.manifest.watermark > before.watermark and new in survivor.ids()
    else:
        assert survivor.manifest == before
    assert verify_model(database.app_url, index_dir, demo).status == "clean"  # anything not applied is pending

    result = sync_model(database.app_url, index_dir, demo)
    assert new in mirror.load(index_dir, demo.id).ids()
    assert result.count == 300
    files = sorted(p.name for p in index_dir.iterdir() if p.suffix != ".lock")
    assert files == sorted(
        [mirror.manifest_path(index_dir, demo.id).name, *mirror.read_manifest(index_dir, demo.id).files()]
    )


@pytest.mark.slow
def test_sigkill_during_clustering_keeps_the_previous_active_run(database, app_conn, demo, index_dir):
    env = env_for(database, index_dir)
    first = soundalike("index", "cluster", "--model", "demo", "--k", "4", env=env)
    assert first.returncode == 0, first.stderr
    runs_before = app_conn.execute("SELECT id FROM cluster_runs ORDER BY id").fetchall()
    assignments_before = app_conn.execute("SELECT count(*) FROM cluster_assignments").fetchone()[0]

    kill_at("cluster:before-commit", env, "index", "cluster", "--model", "demo", "--k", "6")

    assert app_conn.execute("SELECT id FROM cluster_runs ORDER BY id").fetchall() == runs_before
    assert app_conn.execute("SELECT count(*) FROM cluster_assignments").fetchone()[0] == assignments_before == 300
    assert app_conn.execute("SELECT count(*) FROM clusters").fetchone()[0] == 4
    again = soundalike("index", "cluster", "--model", "demo", "--k", "6", env=env)
    assert again.returncode == 0, again.stderr
    assert app_conn.execute("SELECT k FROM cluster_runs ORDER BY id DESC LIMIT 1").fetchone()[0] == 6


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_mirror_is_detected_reported_and_rebuilt(database, demo, index_dir, damage):
    sync_model(database.app_url, index_dir, demo)
    path = index_dir / mirror.read_manifest(index_dir, demo.id).index_file
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 3 :]
    path.write_bytes(bytes(data))

    with pytest.raises(MirrorCorrupt, match="index rebuild"):
        mirror.load(index_dir, demo.id)
    env = env_for(database, index_dir)
    verified = soundalike("index", "verify", "--model", "demo", env=env)
    assert verified.returncode == 1 and "CORRUPT" in verified.stdout
    assert "Traceback" not in verified.stderr and "index rebuild" in verified.stderr
    synced = soundalike("index", "sync", "--model", "demo", env=env)
    assert synced.returncode == 1 and "index rebuild" in synced.stderr and "Traceback" not in synced.stderr

    rebuilt = soundalike("index", "rebuild", "--model", "demo", env=env)
    assert rebuilt.returncode == 0 and "demo: full" in rebuilt.stdout, rebuilt.stderr
    assert soundalike("index", "verify", env=env).returncode == 0


def test_corrupt_manifest_is_reported(database, demo, index_dir):
    sync_model(database.app_url, index_dir, demo)
    mirror.manifest_path(index_dir, demo.id).write_text("{not json")
    report = verify_model(database.app_url, index_dir, demo)
    assert report.status == "corrupt" and "unreadable" in report.message

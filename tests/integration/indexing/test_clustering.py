"""Offline clustering written back, near-duplicates, and the CLI's answers to bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from indexing.clustering import cluster_model
from indexing.demo import ensure_model
from indexing.duplicates import find_pairs
from indexing.errors import IndexingError
from indexing.sync import sync_model
from tests.integration.indexing.conftest import latent_ids, set_generation
from tests.integration.indexing.test_faults import env_for
from tests.integration.test_cli import assert_one_line_error, soundalike


def test_cluster_recovers_the_synthetic_clusters_and_writes_everything(database, app_conn, demo, index_dir):
    result = cluster_model(database.app_url, index_dir, demo, k=4, niter=20, seed=7)
    assert result.n_points == 300 and sum(result.sizes) == 300 and len(result.sizes) == 4
    run = app_conn.execute("SELECT k, n_points, sizes, inertia FROM cluster_runs WHERE id = %s", (result.run_id,))
    k, n_points, sizes, inertia = run.fetchone()
    assert (k, n_points, sizes) == (4, 300, result.sizes) and inertia == pytest.approx(result.inertia)
    rows = app_conn.execute(
        "SELECT (g.params->>'demo_cluster')::int, c.label, a.score, a.x, a.y FROM cluster_assignments a "
        "JOIN clusters c ON c.id = a.cluster_id JOIN latent_embeddings l ON l.id = a.latent_id "
        "JOIN generations g ON g.id = l.generation_id WHERE a.run_id = %s",
        (result.run_id,),
    ).fetchall()
    assert len(rows) == 300
    truth, labels = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    for t in np.unique(truth):  # every true cluster lands in a single k-means cluster
        assert len(np.unique(labels[truth == t])) == 1
    assert all(0.5 < r[2] <= 1.0001 for r in rows)
    xy = np.array([(r[3], r[4]) for r in rows])
    assert np.ptp(xy[:, 0]) > 0 and np.ptp(xy[:, 1]) > 0
    centroids = app_conn.execute("SELECT centroid::float4[] FROM clusters WHERE run_id = %s", (result.run_id,))
    assert all(np.linalg.norm(c[0]) == pytest.approx(1.0, abs=1e-4) for c in centroids.fetchall())


def test_same_seed_same_clustering(database, demo, index_dir, app_conn):
    a = cluster_model(database.app_url, index_dir, demo, k=3, seed=11)
    b = cluster_model(database.app_url, index_dir, demo, k=3, seed=11)
    assert a.sizes == b.sizes and a.inertia == pytest.approx(b.inertia)


def test_newest_run_is_active_and_old_runs_are_pruned(database, app_conn, demo, index_dir):
    runs = [cluster_model(database.app_url, index_dir, demo, k=k, keep_runs=2).run_id for k in (2, 3, 4)]
    kept = [r[0] for r in app_conn.execute("SELECT id FROM cluster_runs ORDER BY id").fetchall()]
    assert kept == runs[1:]
    assert app_conn.execute("SELECT count(*) FROM cluster_assignments").fetchone()[0] == 600


def test_cluster_skips_removed_items_after_sync(database, app_conn, demo, index_dir):
    set_generation(app_conn, latent_ids(app_conn, demo)[0], "archived_at")
    result = cluster_model(database.app_url, index_dir, demo, k=4)
    assert result.n_points == 299


def test_empty_model_and_k_too_large_are_clear_errors(database, app_conn, demo, index_dir):
    empty = ensure_model(app_conn, "empty")
    with pytest.raises(IndexingError, match="model 'empty' has no live latents"):
        cluster_model(database.app_url, index_dir, empty, k=2)
    with pytest.raises(IndexingError, match=r"k=301 is larger than the number of latents of model 'demo' \(300\)"):
        cluster_model(database.app_url, index_dir, demo, k=301)
    assert app_conn.execute("SELECT count(*) FROM cluster_runs").fetchone()[0] == 0


def test_cli_bad_input(database, demo, index_dir, tmp_path):
    env = env_for(database, index_dir)
    assert_one_line_error(
        soundalike("index", "cluster", "--model", "nope", "--k", "3", env=env), "unknown model alias 'nope'", "demo"
    )
    assert_one_line_error(
        soundalike("index", "cluster", "--model", "demo", "--k", "1000", env=env),
        "k=1000 is larger than the number of latents",
    )
    zero = soundalike("index", "cluster", "--model", "demo", "--k", "0", env=env)
    assert zero.returncode == 2 and "--k" in zero.stderr
    no_mirror = env_for(database, tmp_path / "elsewhere")
    verified = soundalike("index", "verify", "--model", "demo", env=no_mirror)
    assert_one_line_error(verified, "does not match the database", "index rebuild")
    assert "demo: MISSING" in verified.stdout


def test_cli_sync_verify_cluster_duplicates(database, app_conn, demo, index_dir, tmp_path):
    env = env_for(database, index_dir)
    synced = soundalike("index", "sync", env=env)
    assert synced.returncode == 0 and "demo: full, +300 -0, 300 vectors" in synced.stdout, synced.stderr
    verified = soundalike("index", "verify", env=env)
    assert verified.returncode == 0 and "demo: CLEAN" in verified.stdout
    clustered = soundalike("index", "cluster", "--model", "demo", "--k", "4", env=env)
    assert clustered.returncode == 0 and "k=4 over 300 latents" in clustered.stdout, clustered.stderr

    a = latent_ids(app_conn, demo)[10]
    _duplicate_latent(app_conn, demo, a)
    report = tmp_path / "dups.json"
    dups = soundalike(
        "index", "duplicates", "--model", "demo", "--threshold", "0.999", "--output", str(report), env=env
    )
    assert dups.returncode == 0, dups.stderr
    data = json.loads(report.read_text())
    assert data["count"] == 1 and data["pairs"][0]["a"] == a and data["pairs"][0]["similarity"] >= 0.999


def _duplicate_latent(conn, model, latent_id: int) -> int:
    gen = conn.execute(
        "INSERT INTO generations (owner, model_id, kind, status) "
        "VALUES ('bob', %s, 'import', 'succeeded') RETURNING id",
        (model.id,),
    ).fetchone()[0]
    return conn.execute(
        "INSERT INTO latent_embeddings (generation_id, model_id, embedding) "
        "SELECT %s, model_id, embedding FROM latent_embeddings WHERE id = %s RETURNING id",
        (gen, latent_id),
    ).fetchone()[0]


def test_duplicates_threshold_is_checked(database, demo, index_dir):
    sync_model(database.app_url, index_dir, demo)
    with pytest.raises(IndexingError, match="--threshold"):
        find_pairs(database.app_url, index_dir, demo, 1.5)
    assert find_pairs(database.app_url, index_dir, demo, 0.9999) == []

"""Sync and verify against the real database: full, incremental, removals, out-of-order commits."""

from __future__ import annotations

import threading

import numpy as np
import psycopg
import pytest

from indexing import mirror
from indexing.errors import IndexingError
from indexing.sync import sync_alias, sync_all, sync_model
from indexing.verify import verify_model
from service.db.server import urls
from tests.integration.indexing.conftest import insert_latent, latent_ids, set_generation


def mirrored_ids(index_dir, model) -> set[int]:
    return set(mirror.load(index_dir, model.id).ids().tolist())


def test_first_sync_is_full_and_verifies_clean(database, app_conn, demo, index_dir):
    result = sync_model(database.app_url, index_dir, demo)
    assert (result.mode, result.count) == ("full", 300)
    assert mirrored_ids(index_dir, demo) == set(latent_ids(app_conn, demo))
    report = verify_model(database.app_url, index_dir, demo)
    assert report.status == "clean" and report.db_count == 300 and report.mirror_count == 300, report.summary()


def test_mirror_vectors_are_the_normalised_database_vectors(database, app_conn, demo, index_dir):
    sync_model(database.app_url, index_dir, demo)
    some = app_conn.execute("SELECT id, embedding::float4[] FROM latent_embeddings ORDER BY id LIMIT 5").fetchall()
    stored = mirror.load(index_dir, demo.id).index.reconstruct_batch(np.array([r[0] for r in some]))
    for (_, embedding), got in zip(some, stored, strict=True):
        expected = np.asarray(embedding, dtype=np.float32) / np.linalg.norm(embedding)
        assert np.allclose(got, expected, atol=1e-6)


def test_incremental_sync_applies_inserts_updates_and_removals(database, app_conn, demo, index_dir):
    sync_model(database.app_url, index_dir, demo)
    ids = latent_ids(app_conn, demo)
    new = insert_latent(app_conn, demo, seed=1)
    set_generation(app_conn, ids[0], "deleted_at")
    set_generation(app_conn, ids[1], "archived_at")
    app_conn.execute(
        "DELETE FROM generations WHERE id = (SELECT generation_id FROM latent_embeddings WHERE id = %s)", (ids[2],)
    )
    app_conn.execute(
        "UPDATE latent_embeddings SET embedding = (embedding - embedding) - embedding WHERE id = %s", (ids[3],)
    )

    assert verify_model(database.app_url, index_dir, demo).status == "clean"  # all pending, not drift
    result = sync_alias(database.app_url, index_dir, "demo")
    assert result.mode == "incremental" and result.upserted == 2 and result.removed == 3
    got = mirrored_ids(index_dir, demo)
    assert new in got and ids[3] in got and not {ids[0], ids[1], ids[2]} & got
    assert len(got) == 298
    report = verify_model(database.app_url, index_dir, demo)
    assert report.status == "clean" and report.pending == 0, report.summary()

    set_generation(app_conn, ids[0], "deleted_at", "NULL")  # undelete: back in the mirror
    sync_model(database.app_url, index_dir, demo)
    assert ids[0] in mirrored_ids(index_dir, demo)


def test_incremental_sync_writes_a_delta_and_compacts_when_it_grows(database, app_conn, demo, index_dir, monkeypatch):
    import functools

    import indexing.sync
    from indexing.manifest import should_compact

    sync_model(database.app_url, index_dir, demo)
    base = mirror.read_manifest(index_dir, demo.id)
    ids = latent_ids(app_conn, demo)
    insert_latent(app_conn, demo, seed=1)
    set_generation(app_conn, ids[0], "archived_at")
    sync_model(database.app_url, index_dir, demo)
    first = mirror.read_manifest(index_dir, demo.id)
    assert first.index_file == base.index_file and first.checksum == base.checksum  # the base was not rewritten
    assert first.delta_file and ids[0] in first.tombstones and first.count == 300
    assert verify_model(database.app_url, index_dir, demo).status == "clean"

    monkeypatch.setattr(indexing.sync, "should_compact", functools.partial(should_compact, fraction=0.0, minimum=3))
    for seed in (2, 3):
        insert_latent(app_conn, demo, seed=seed)
    sync_model(database.app_url, index_dir, demo)
    compacted = mirror.read_manifest(index_dir, demo.id)
    assert compacted.index_file != base.index_file and compacted.delta_file is None and compacted.tombstones == ()
    assert compacted.count == 302 and verify_model(database.app_url, index_dir, demo).status == "clean"
    assert {p.name for p in index_dir.glob("model-*-*")} == compacted.files()


def test_nothing_changed_writes_no_new_index_file(database, demo, index_dir):
    sync_model(database.app_url, index_dir, demo)
    before = mirror.read_manifest(index_dir, demo.id)
    result = sync_model(database.app_url, index_dir, demo)
    assert result.mode == "unchanged"
    assert mirror.read_manifest(index_dir, demo.id).index_file == before.index_file


def test_verify_reports_drift_it_did_not_expect(database, owner_conn, demo, index_dir):
    sync_model(database.app_url, index_dir, demo)
    ids = latent_ids(owner_conn, demo)
    # Changes that bypass the change log (triggers off: a restore script, a bug) are drift, not pending.
    owner_conn.execute("ALTER TABLE latent_embeddings DISABLE TRIGGER USER")
    try:
        owner_conn.execute(
            "UPDATE latent_embeddings SET embedding = (embedding - embedding) - embedding WHERE id = %s", (ids[5],)
        )
        owner_conn.execute("DELETE FROM latent_embeddings WHERE id = %s", (ids[6],))
    finally:
        owner_conn.execute("ALTER TABLE latent_embeddings ENABLE TRIGGER USER")
    report = verify_model(database.app_url, index_dir, demo)
    assert report.status == "drift"
    assert report.mismatched == [ids[5]] and report.extra == [ids[6]] and report.missing_count == 0
    sync_model(database.app_url, index_dir, demo, full=True)
    assert verify_model(database.app_url, index_dir, demo).status == "clean"


def test_out_of_order_commit_is_not_missed(database, app_conn, demo, index_dir):
    """A transaction that inserts early and commits after a later one (and after a sync) is still mirrored."""
    sync_model(database.app_url, index_dir, demo)
    with psycopg.connect(urls.libpq_url(database.app_url)) as slow:
        early = insert_latent(slow, demo, seed=10)  # takes its id and xid now, commits last
        # Another owner: one owner's generation writes are serialised by the events log's advisory lock.
        late = insert_latent(app_conn, demo, owner="bob", seed=11)  # autocommit: committed at once
        assert late > early
        sync_model(database.app_url, index_dir, demo)
        got = mirrored_ids(index_dir, demo)
        assert late in got and early not in got
        slow.commit()
    result = sync_model(database.app_url, index_dir, demo)
    assert early in mirrored_ids(index_dir, demo) and result.upserted >= 1
    assert verify_model(database.app_url, index_dir, demo).status == "clean"


def test_concurrent_writers_with_interleaved_syncs_lose_nothing(database, app_conn, demo, index_dir):
    """Several writers, each holding its transaction open for a while, while syncs run in between (one owner
    each: the events log serialises one owner's generation writes)."""
    sync_model(database.app_url, index_dir, demo)
    inserted: list[int] = []
    lock = threading.Lock()
    go = threading.Barrier(5)

    def writer(n: int) -> None:
        with psycopg.connect(urls.libpq_url(database.app_url)) as conn:
            go.wait()
            for i in range(10):
                ids = [insert_latent(conn, demo, owner=f"writer-{n}", seed=1000 * n + i) for _ in range(3)]
                if i % 3 == n % 3:
                    set_generation(conn, ids[0], "archived_at")
                    ids = ids[1:]
                conn.commit()
                with lock:
                    inserted.extend(ids)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    go.wait()
    while any(t.is_alive() for t in threads):
        sync_model(database.app_url, index_dir, demo)
    for t in threads:
        t.join()
    sync_model(database.app_url, index_dir, demo)
    got = mirrored_ids(index_dir, demo)
    assert set(inserted) <= got
    assert got == set(
        r[0]
        for r in app_conn.execute(
            "SELECT l.id FROM latent_embeddings l JOIN generations g ON g.id = l.generation_id "
            "WHERE g.archived_at IS NULL AND g.deleted_at IS NULL AND l.model_id = %s",
            (demo.id,),
        )
    )
    assert verify_model(database.app_url, index_dir, demo).status == "clean"


def test_sync_all_prunes_the_log_and_stale_mirrors_rebuild(database, app_conn, demo, index_dir, tmp_path):
    other_dir = tmp_path / "other"
    sync_model(database.app_url, other_dir, demo)  # a second mirror somewhere else, then left behind
    insert_latent(app_conn, demo, seed=5)
    results = sync_all(database.app_url, index_dir)
    assert [r.model for r in results] == ["demo"]
    assert app_conn.execute("SELECT count(*) FROM latent_changes").fetchone()[0] == 0
    result = sync_model(database.app_url, other_dir, demo)  # its watermark is below the pruned horizon
    assert result.mode == "full" and result.count == 301


def test_mirror_from_another_server_rebuilds(database, app_conn, demo, index_dir):
    """A watermark ahead of this database's transaction ids (a restore into a fresh cluster) forces a rebuild."""
    from dataclasses import replace

    sync_model(database.app_url, index_dir, demo)
    manifest = mirror.read_manifest(index_dir, demo.id)
    with mirror.locked(index_dir, demo.id, exclusive=True):
        mirror.commit_manifest(index_dir, replace(manifest, watermark=manifest.watermark + 10**9))
    insert_latent(app_conn, demo, seed=77)
    result = sync_model(database.app_url, index_dir, demo)
    assert result.mode == "full" and result.count == 301


def test_empty_model_gets_an_empty_mirror(database, app_conn, index_dir):
    from indexing.demo import ensure_model

    model = ensure_model(app_conn, "empty")
    result = sync_model(database.app_url, index_dir, model)
    assert result.count == 0
    assert verify_model(database.app_url, index_dir, model).status == "clean"


def test_unknown_alias_is_a_clear_error(database, app_conn, demo, index_dir):
    with pytest.raises(IndexingError, match="unknown model alias 'nope' \\(known aliases: demo\\)"):
        sync_alias(database.app_url, index_dir, "nope")


def test_latents_of_other_models_stay_out(database, app_conn, demo, index_dir):
    from indexing.demo import load_demo

    other = load_demo(app_conn, "other", n=50, clusters=2, seed=9).model
    sync_model(database.app_url, index_dir, demo)
    sync_model(database.app_url, index_dir, other)
    assert mirrored_ids(index_dir, demo) == set(latent_ids(app_conn, demo))
    assert mirrored_ids(index_dir, other) == set(latent_ids(app_conn, other))


def test_loading_the_same_demo_seed_twice_is_a_clear_error_and_adds_nothing(database, app_conn, demo):
    from indexing.demo import DemoAlreadyLoaded, load_demo

    before = len(latent_ids(app_conn, demo))
    with pytest.raises(DemoAlreadyLoaded, match="seed 3 are already loaded \\(model 'demo'\\); pass another --seed"):
        load_demo(app_conn, "demo", n=300, clusters=4, seed=3)
    assert len(latent_ids(app_conn, demo)) == before
    assert load_demo(app_conn, "demo", n=20, clusters=4, seed=4).rows == 20

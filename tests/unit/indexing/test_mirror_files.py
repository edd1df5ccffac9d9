"""Pure logic of the indexer: manifest, checksum, watermark arithmetic, COPY decoding, mirror files."""

from __future__ import annotations

import struct

import faiss
import numpy as np
import pytest

from indexing import changes, mirror
from indexing.clustering import check_k, kmeans
from indexing.demo import clustered_vectors, random_centres
from indexing.errors import IndexingError, MirrorCorrupt
from indexing.manifest import Manifest, checksum
from indexing.source import COPY_SIGNATURE, _CopyDecoder


def manifest(**overrides) -> Manifest:
    fields = dict(
        model_id=3,
        model_alias="m",
        index_file="model-3-ab.faiss",
        count=2,
        dim=4,
        watermark=100,
        checksum="sha256:00",
        bytes=10,
        built_at="2026-11-22T00:00:00+00:00",
        synced_at="2026-11-22T00:00:00+00:00",
    )
    return Manifest(**{**fields, **overrides})


def test_manifest_round_trips_and_advances():
    m = manifest(delta_file="model-3-cd.delta.faiss", delta_checksum="sha256:11", delta_bytes=5, tombstones=(4, 9))
    assert m.files() == {"model-3-ab.faiss", "model-3-cd.delta.faiss"}
    assert Manifest.from_json(m.to_json()) == m
    later = m.advanced(250)
    assert later.watermark == 250 and later.index_file == m.index_file and later.checksum == m.checksum


@pytest.mark.parametrize("text", ["{not json", '{"format": 1}', '{"format": 99}', "[]"])
def test_bad_manifest_is_corrupt(text):
    with pytest.raises(MirrorCorrupt):
        Manifest.from_json(text)


def test_checksum_changes_with_any_byte():
    data = bytearray(b"x" * 1000)
    before = checksum(data)
    data[500] ^= 1
    assert checksum(data) != before and before.startswith("sha256:") and len(before) == 7 + 64


def test_compaction_threshold():
    from indexing.manifest import should_compact

    assert not should_compact(4096, 1000) and should_compact(4097, 1000)  # small mirrors: an absolute floor
    assert not should_compact(10_000, 100_000) and should_compact(10_001, 100_000)  # large ones: 10 %


def test_watermark_arithmetic():
    assert changes.must_reread_from(100) == 100  # inclusive: a transaction with xid == xmin was still running
    assert changes.needs_full_rebuild(None, 0, 500)
    assert changes.needs_full_rebuild(99, 100, 500) and not changes.needs_full_rebuild(100, 100, 500)
    assert changes.needs_full_rebuild(501, 0, 500) and not changes.needs_full_rebuild(500, 0, 500)
    assert changes.prune_horizon([300, 120, 500]) == 120 and changes.prune_horizon([]) is None


def copy_stream(rows: list[tuple[int, np.ndarray]]) -> bytes:
    out = bytearray(COPY_SIGNATURE + struct.pack(">ii", 0, 0))
    for latent_id, vector in rows:
        out += struct.pack(">hiq", 2, 8, latent_id)
        out += struct.pack(">ihh", 4 + 4 * len(vector), len(vector), 0) + vector.astype(">f4").tobytes()
    return bytes(out + struct.pack(">h", -1))


@pytest.mark.parametrize("chunk", [1, 7, 100, 10**6])
def test_copy_decoder_in_any_chunking(chunk):
    rng = np.random.default_rng(0)
    rows = [(i * 3, rng.standard_normal(8).astype(np.float32)) for i in range(50)]
    stream = copy_stream(rows)
    decoder = _CopyDecoder(batch_rows=16)
    batches = [b for i in range(0, len(stream), chunk) for b in decoder.feed(stream[i : i + chunk])]
    batches += list(decoder.finish())
    ids = np.concatenate([b[0] for b in batches])
    vectors = np.concatenate([b[1] for b in batches])
    assert ids.tolist() == [r[0] for r in rows]
    assert np.array_equal(vectors, np.stack([r[1] for r in rows]))
    assert all(len(b[0]) <= 16 + chunk for b in batches)


def test_copy_decoder_empty_and_truncated():
    assert list(_CopyDecoder(4).feed(copy_stream([]))) == []
    stream = copy_stream([(1, np.ones(4, np.float32))])
    decoder = _CopyDecoder(4)
    list(decoder.feed(stream[:-5]))
    with pytest.raises(IndexingError, match="truncated"):
        list(decoder.finish())


def write_mirror(index_dir, n=20, dim=4) -> mirror.Mirror:
    index = mirror.new_index(dim)
    vectors = np.random.default_rng(1).standard_normal((n, dim)).astype(np.float32)
    faiss.normalize_L2(vectors)
    index.add_with_ids(vectors, np.arange(100, 100 + n))
    name, digest, size = mirror.write_index(index_dir, 7, index)
    m = manifest(model_id=7, index_file=name, count=n, dim=dim, checksum=digest, bytes=size)
    mirror.commit_manifest(index_dir, m)
    return mirror.Mirror(m, index)


def test_mirror_write_load_and_leftovers(tmp_path):
    first = write_mirror(tmp_path)
    (tmp_path / "model-7-dead.faiss").write_bytes(b"debris")
    (tmp_path / ".model-7.json.1234.tmp").write_bytes(b"debris")
    (tmp_path / "model-70-other.faiss").write_bytes(b"another model's file")
    second = write_mirror(tmp_path, n=30)
    loaded = mirror.load(tmp_path, 7)
    assert loaded.manifest == second.manifest and loaded.ids().tolist() == list(range(100, 130))
    assert np.allclose(loaded.vectors(), second.index.reconstruct_batch(np.arange(100, 130)))
    names = {p.name for p in tmp_path.iterdir()}
    assert first.manifest.index_file not in names and "model-7-dead.faiss" not in names
    assert ".model-7.json.1234.tmp" not in names and "model-70-other.faiss" in names
    assert mirror.load(tmp_path, 8) is None


def test_mirror_detects_truncation_and_missing_file(tmp_path):
    m = write_mirror(tmp_path).manifest
    path = tmp_path / m.index_file
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(MirrorCorrupt, match="bytes"):
        mirror.load(tmp_path, 7)
    path.unlink()
    with pytest.raises(MirrorCorrupt, match="missing"):
        mirror.load(tmp_path, 7)


def test_check_k():
    check_k(3, 3, "m")
    with pytest.raises(IndexingError, match="no live latents"):
        check_k(1, 0, "m")
    with pytest.raises(IndexingError, match="k=4 is larger"):
        check_k(4, 3, "m")


def test_kmeans_is_seeded_and_projects_to_two_dimensions():
    vectors, _ = clustered_vectors(400, random_centres(5, 32, seed=2), seed=3)
    ids = np.arange(400)
    a, b = kmeans(ids, vectors, 5, 10, seed=9), kmeans(ids, vectors, 5, 10, seed=9)
    assert np.array_equal(a.labels, b.labels) and a.sizes.sum() == 400 and a.xy.shape == (400, 2)
    assert np.allclose(np.linalg.norm(a.centroids, axis=1), 1, atol=1e-5)
    assert a.inertia == pytest.approx(float(np.sum(1 - a.scores)))


def test_prefetched_keeps_order_propagates_errors_and_stops_early():
    from indexing.source import prefetched

    assert list(prefetched(iter(range(100)), depth=2)) == list(range(100))

    def failing():
        yield 1
        raise IndexingError("boom")

    with pytest.raises(IndexingError, match="boom"):
        list(prefetched(failing()))
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    reader = prefetched(endless(), depth=2)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()  # the consumer stops: the producer thread ends instead of running on
    assert len(produced) <= 3 + 2 + 1


def test_merged_drains_every_source():
    from indexing.source import merged

    assert sorted(merged([iter(range(0, 50)), iter(range(50, 80)), iter([])], depth=1)) == list(range(80))

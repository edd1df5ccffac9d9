import os
import time

import pytest

from service.storage import BlobStore


@pytest.fixture
def store(tmp_path):
    return BlobStore(tmp_path / "blobs", tmp_path / "archive")


def test_put_is_content_addressed_and_deduplicated(store):
    first = store.put(b"RIFF....data", ".wav")
    second = store.put(b"RIFF....data", ".wav")
    assert first == second
    assert first.uri == f"blob:{first.sha256[:2]}/{first.sha256[2:4]}/{first.sha256}.wav"
    assert store.path(first.uri).read_bytes() == b"RIFF....data"
    assert not [p for p in first.path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_copy_to_archive_keeps_the_original_and_is_idempotent(store):
    blob = store.put(b"abc", ".wav")
    archived = store.copy_to_archive(blob.uri)
    assert archived.startswith("archive:") and blob.path.exists()
    assert store.path(archived).read_bytes() == b"abc"
    assert store.copy_to_archive(blob.uri) == archived
    assert store.copy_to_archive(archived) == archived
    assert not [p for p in store.path(archived).parent.iterdir() if p.name.startswith(".tmp-")]


def test_uris_skip_temporaries_and_young_files(store):
    old = store.put(b"old", ".wav")
    past = time.time() - 7200
    os.utime(old.path, (past, past))
    store.put(b"new", ".wav")
    (old.path.parent / ".tmp-partial").write_bytes(b"x")
    assert list(store.uris(older_than_seconds=3600)) == [old.uri]
    assert len(list(store.uris())) == 2


@pytest.mark.parametrize("uri", ["blob:../../etc/passwd", "s3:bucket/key", "blob:", "nonsense"])
def test_path_refuses_foreign_uris(store, uri):
    with pytest.raises(ValueError, match="not a blob URI"):
        store.path(uri)


def test_put_many_stores_each_in_order_and_identical_content_once(store):
    datas = [b"one", b"two", b"one", b"three"]
    blobs = store.put_many(datas, ".wav")
    assert [blob.sha256 for blob in blobs] == [store.address(data, ".wav").sha256 for data in datas]
    assert blobs[0] == blobs[2] and [store.path(blob.uri).read_bytes() for blob in blobs] == datas
    assert len(list(store.uris())) == 3
    assert not [p for p in store.roots["blob"].rglob(".tmp-*")]


def test_address_writes_nothing_until_write(store):
    blob = store.address(b"later", ".wav")
    assert not blob.path.exists() and blob.bytes == 5
    store.write([(blob, b"later")])
    assert blob.path.read_bytes() == b"later"


def test_a_failed_write_leaves_no_temporaries(store, monkeypatch):
    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        store.put_many([b"a", b"b"], ".wav")
    assert list(store.roots["blob"].rglob("*.wav")) == [] and not list(store.roots["blob"].rglob(".tmp-*"))

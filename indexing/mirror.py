"""Mirror files: one FAISS index per model plus its manifest, written so that a crash never breaks them.

Layout in the index directory (``SOUNDALIKE_STORAGE_INDEX_DIR``, default ``var/index``)::

    model-<id>.json                  the manifest: the commit point
    model-<id>-<token>.faiss         the index file the manifest names (a new name on every write)
    model-<id>-<token>.delta.faiss   upserts since that file was written (incremental syncs write only this)
    model-<id>.lock                  flock: one writer (exclusive) or many readers (shared)

A write puts the index under a fresh name (temp file, fsync, rename, fsync of the directory), then replaces
the manifest the same way, then deletes the index file the old manifest named. Killed before the manifest
rename, the old manifest still names the old, intact file; killed after, the new one is complete. Leftovers
(temp files, unreferenced index files) are removed by the next writer.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from indexing.errors import MirrorCorrupt
from indexing.failpoints import failpoint
from indexing.manifest import CHECKSUM_ALGORITHM, Manifest

WRITE_CHUNK = 16 * 2**20


@dataclass
class Mirror:
    manifest: Manifest
    index: faiss.IndexIDMap2  # the complete mirror (base with the delta applied)
    delta: faiss.IndexIDMap2 | None = None  # the delta file's upserts, as written

    def ids(self) -> np.ndarray:
        return index_ids(self.index)

    def vectors(self) -> np.ndarray:
        """All stored (unit) vectors in storage order, aligned with ``ids()`` (a copy)."""
        return index_vectors(self.index)


def index_ids(index: faiss.IndexIDMap2) -> np.ndarray:
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def index_vectors(index: faiss.IndexIDMap2) -> np.ndarray:
    flat = faiss.downcast_index(index.index)
    return faiss.vector_to_array(flat.codes).view(np.float32).reshape(-1, index.d)


def new_index(dim: int) -> faiss.IndexIDMap2:
    """An empty mirror index: exact inner product over unit vectors (= cosine), ids = latent_embeddings.id."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def manifest_path(index_dir: Path, model_id: int) -> Path:
    return Path(index_dir) / f"model-{model_id}.json"


def _lock_path(index_dir: Path, model_id: int) -> Path:
    return Path(index_dir) / f"model-{model_id}.lock"


@contextmanager
def locked(index_dir: Path, model_id: int, exclusive: bool) -> Iterator[None]:
    """Hold the model's mirror lock: exclusive for writers, shared for readers (released on any exit, even kill)."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(index_dir, model_id), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_manifest(index_dir: Path, model_id: int) -> Manifest | None:
    path = manifest_path(index_dir, model_id)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return Manifest.from_json(text, where=str(path))


def load(index_dir: Path, model_id: int) -> Mirror | None:
    """The model's mirror, checked against its manifest (size, checksum, count); None when there is none."""
    manifest = read_manifest(index_dir, model_id)
    if manifest is None:
        return None
    index = _read_checked(Path(index_dir) / manifest.index_file, manifest.bytes, manifest.checksum)
    delta = None
    if manifest.delta_file:
        delta = _read_checked(Path(index_dir) / manifest.delta_file, manifest.delta_bytes, manifest.delta_checksum)
    removed = np.asarray(manifest.tombstones, dtype=np.int64)
    if delta is not None:
        removed = np.union1d(removed, index_ids(delta))
    if len(removed):
        index.remove_ids(faiss.IDSelectorBatch(removed))
    if delta is not None and delta.ntotal:
        index.add_with_ids(index_vectors(delta), index_ids(delta))
    if index.ntotal != manifest.count or index.d != manifest.dim:
        raise MirrorCorrupt(
            f"mirror of model {model_id} holds {index.ntotal}×{index.d}, the manifest says "
            f"{manifest.count}×{manifest.dim}: run `soundalike index rebuild`"
        )
    return Mirror(manifest, index, delta)


def _read_checked(path: Path, size: int, digest: str | None) -> faiss.IndexIDMap2:
    """Read an index file after checking its size and checksum against the manifest."""
    fix = "run `soundalike index rebuild`"
    try:
        actual_size, actual = file_checksum(path)
    except FileNotFoundError:
        raise MirrorCorrupt(f"mirror file {path} named by the manifest is missing: {fix}") from None
    if actual_size != size:
        raise MirrorCorrupt(f"mirror file {path} has {actual_size} bytes, the manifest says {size}: {fix}")
    if actual != digest:
        raise MirrorCorrupt(f"mirror file {path} fails its checksum ({actual[:19]}… != {str(digest)[:19]}…): {fix}")
    return faiss.read_index(str(path))  # index files are never rewritten in place: this is the file just hashed


def write_index(index_dir: Path, model_id: int, index: faiss.Index, delta: bool = False) -> tuple[str, str, int]:
    """Write ``index`` under a fresh file name (durably); returns (file name, checksum, bytes). Call under the lock.

    FAISS streams the index through a callback that hashes and writes each chunk: no in-memory copy of it."""
    name = f"model-{model_id}-{secrets.token_hex(6)}{'.delta' if delta else ''}.faiss"
    digest, size = hashlib.sha256(), 0

    def write(fd: int, chunk: bytes) -> None:
        nonlocal size
        digest.update(chunk)
        size += len(chunk)
        _write_all(fd, chunk)

    with _durable_file(Path(index_dir) / name) as fd:
        writer = faiss.PyCallbackIOWriter(lambda chunk: write(fd, chunk), WRITE_CHUNK)
        faiss.write_index(index, writer)
        del writer
    return name, f"{CHECKSUM_ALGORITHM}:{digest.hexdigest()}", size


def file_checksum(path: Path) -> tuple[int, str]:
    """(bytes, checksum) of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(WRITE_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, f"{CHECKSUM_ALGORITHM}:{digest.hexdigest()}"


def commit_manifest(index_dir: Path, manifest: Manifest) -> None:
    """Switch the mirror to ``manifest`` (atomic), then drop files no manifest names. Call under the lock."""
    failpoint("sync:before-manifest")
    _write_durably(manifest_path(index_dir, manifest.model_id), manifest.to_json().encode())
    failpoint("sync:after-manifest")
    remove_leftovers(index_dir, manifest.model_id, keep=manifest.files())


def remove_leftovers(index_dir: Path, model_id: int, keep: set[str]) -> list[Path]:
    """Delete temp files and index files not in ``keep`` (replaced, or a killed writer's debris). Under the lock."""
    removed = []
    for path in Path(index_dir).glob(f"model-{model_id}-*"):
        if path.name not in keep:
            path.unlink(missing_ok=True)
            removed.append(path)
    for pattern in (f".model-{model_id}-*.tmp", f".model-{model_id}.json.*.tmp"):
        for path in Path(index_dir).glob(pattern):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _write_durably(path: Path, data: bytes) -> None:
    with _durable_file(path) as fd:
        _write_all(fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextmanager
def _durable_file(path: Path) -> Iterator[int]:
    """Yield the fd of a temp file next to ``path``; on success fsync it, rename it over ``path``, fsync the
    directory. On failure the temp file is removed and ``path`` is untouched."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        yield fd
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

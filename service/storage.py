"""The audio blob store: a local directory, content-addressed by sha256.

A blob is written to a temporary name in its final directory, fsynced, and renamed into place, so a file
either exists whole or not at all; the database row that points to it is committed afterwards. Files with
no row (a crash between the two, a purge) are removed by the orphan sweep.

URIs name the area and the relative path: ``blob:ab/cd/<sha256>.wav`` (live) or ``archive:...`` (archived).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

AREAS = ("blob", "archive")


@dataclass(frozen=True)
class StoredBlob:
    uri: str
    sha256: str
    bytes: int
    path: Path


class BlobStore:
    def __init__(self, blob_dir: Path, archive_dir: Path) -> None:
        self.roots = {"blob": Path(blob_dir).resolve(), "archive": Path(archive_dir).resolve()}

    def put(self, data: bytes, suffix: str) -> StoredBlob:
        """Store ``data`` durably; identical content is stored once."""
        digest = hashlib.sha256(data).hexdigest()
        relative = f"{digest[:2]}/{digest[2:4]}/{digest}{suffix}"
        path = self.roots["blob"] / relative
        if not path.exists():
            _write_atomically(path, data)
        return StoredBlob(uri=f"blob:{relative}", sha256=digest, bytes=len(data), path=path)

    def path(self, uri: str) -> Path:
        area, _, relative = uri.partition(":")
        if area not in AREAS or not relative or ".." in Path(relative).parts:
            raise ValueError(f"not a blob URI: {uri!r}")
        return self.roots[area] / relative

    def copy_to_archive(self, uri: str) -> str:
        """Copy a live blob to the archive area and return its archive URI (idempotent). The original stays
        until the caller has committed the new URI and deletes it, so no row ever points at a missing file."""
        area, _, relative = uri.partition(":")
        if area == "archive":
            return uri
        target = self.roots["archive"] / relative
        if not target.exists():
            _write_atomically(target, self.path(uri).read_bytes())
        return f"archive:{relative}"

    def delete(self, uri: str) -> bool:
        path = self.path(uri)
        try:
            path.unlink()
            return True
        except FileNotFoundError:
            return False

    def uris(self, older_than_seconds: float = 0) -> Iterator[str]:
        """Every stored blob (skipping temporaries and files newer than the grace period)."""
        cutoff = time.time() - older_than_seconds
        for area, root in self.roots.items():
            if not root.exists():
                continue
            for path in root.rglob("*"):
                if path.is_file() and not path.name.startswith(".") and path.stat().st_mtime <= cutoff:
                    yield f"{area}:{path.relative_to(root).as_posix()}"


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
